"""A genai-prices `ModelPrice` compiled once, so that pricing one usage costs microseconds instead of ~60.

`ModelPrice.calc_price` re-validates the price and re-derives the usage decomposition on every call. `Rate` does
both once, with genai-prices' own validation, and per usage repeats only what depends on it: the leaf counts of
the priced units (exactly as `genai_prices.decompose.compute_leaf_values`) and genai-prices' `calc_unit_price`,
which applies the tiers. The result is the Decimal `total_price` `calc_price` would give, or the ValueError it
would raise.

Usage follows genai-prices' (and the GenAI semconv's) convention: `input_tokens` counts ALL input, cache reads and
writes included; `output_tokens` counts all output, reasoning included. More specific units are subtracted from
their ancestors, so uncached input is billed at the input price and cache reads at the cache read price; a record's
other units likewise (`input_image_tokens` within `input_tokens`, `cache_audio_read_tokens` within both
`cache_read_tokens` and `input_audio_tokens`).

The usage is the record's token fields (`Usage`, all of them reported, 0 included) and its `units`, reported when
present. A priced unit that is not reported counts 0, unless genai-prices would refuse to infer it: a reported
more specific unit is not 0 (`input_audio_seconds` without `audio_seconds`), or two reported units that are not 0
overlap exactly in it (`cache_read_tokens` and `input_audio_tokens` without `cache_audio_read_tokens`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import combinations

from genai_prices._usage import UsageValue, subtract_usage_values  # genai-prices' own (exact) usage arithmetic
from genai_prices.decompose import is_descendant_or_self
from genai_prices.types import ModelPrice, TieredPrices, calc_unit_price
from genai_prices.units import UnitDef
from genai_prices.validation import validate_priced_units

from ..normalise.units import AUDIO_SECONDS, FIELD_KEYS, INPUT_AUDIO_SECONDS, REGISTRY, REQUESTS

# Positions of the usage a `Record` reports in its fields, in `Rate.cost`'s `usage`.
_SOURCES = {key: i for i, key in enumerate(FIELD_KEYS)}
_FIELD_UNITS = tuple(REGISTRY.units[key] for key in FIELD_KEYS)
# (input incl. cache and audio, cache read, cache write incl. 1-hour, output incl. reasoning and audio, reasoning,
# 1-hour cache write, input audio, output audio, web searches): `FIELD_KEYS`.
Usage = tuple[int, int, int, int, int, int, int, int, int]
Units = Mapping[str, int | float]  # `Record.units`
_ZERO = Decimal(0)


class Rate:
    """The cost of a usage under one `ModelPrice`, identical to `model_price.calc_price(usage)['total_price']`.

    `minimum_seconds`: audio durations billed at least this long (genai-prices' rule for Groq's Whisper models).
    """

    __slots__ = ("_counted", "_minimum_seconds", "_per_request", "_priced", "_refused", "_terms", "model_price")

    def __init__(self, model_price: ModelPrice, minimum_seconds: int = 0) -> None:
        self.model_price = model_price
        self._minimum_seconds = minimum_seconds
        priced = [
            (unit, price)
            for unit in REGISTRY.units.values()
            if isinstance(price := getattr(model_price, unit.price_key, None), Decimal | TieredPrices)
        ]
        validate_priced_units([unit for unit, _ in priced], REGISTRY)
        # Most specific first, as compute_leaf_values: a unit's descendants are then already computed.
        counted = sorted(
            ((u, p) for u, p in priced if u.usage_key != REQUESTS),
            key=lambda up: (-len(up[0].dimensions), up[0].usage_key),
        )
        self._terms = tuple(
            (
                _SOURCES.get(unit.usage_key, -1),
                price,
                unit.per,
                tuple(j for j, (other, _) in enumerate(counted[:i]) if is_descendant_or_self(unit, other)),
            )
            for i, (unit, price) in enumerate(counted)
        )
        self._counted = tuple(unit for unit, _ in counted)
        self._priced = frozenset(unit.usage_key for unit in self._counted)
        self._per_request = tuple((price, unit.per) for unit, price in priced if unit.usage_key == REQUESTS)
        # Pairs of token fields that, both not 0, make genai-prices refuse a usage without units: a priced unit that
        # is no field is then inferred from them (a pair (i, i) when one field alone is more specific than it).
        self._refused = tuple(
            (i, j) for unit in self._counted if unit.usage_key not in _SOURCES for i, j in _refusing_fields(unit)
        )

    def cost(self, usage: Usage, units: Units | None = None) -> Decimal:
        """USD for a `Usage` (token counts, each more specific one included in its ancestor's) and a record's
        other `units`; ValueError when genai-prices refuses the usage."""
        if units:
            return self._cost_with_units(usage, units)
        for i, j in self._refused:
            if usage[i] and usage[j]:
                names = f"{FIELD_KEYS[i]} and {FIELD_KEYS[j]}"
                raise ValueError(f"invalid usage {usage}: {names} need a more specific unit reported with them")
        input_tokens = usage[0]
        leaves: list[int] = []
        total = _ZERO
        for source, price, per, descendants in self._terms:
            count = usage[source] if source >= 0 else 0
            for j in descendants:
                count -= leaves[j]
            if count < 0:
                raise ValueError(f"invalid usage {usage}: a more specific token count exceeds its total")
            leaves.append(count)
            if count:
                total += calc_unit_price(price, count, input_tokens, per)
        for price, per in self._per_request:
            total += calc_unit_price(price, 1, input_tokens, per)
        return total

    def covers(self, units: Units) -> bool:
        """Whether this price charges any of the `units` that are not 0 (as itself or within a priced ancestor)."""
        priced = self._priced
        return any(
            value
            and key in REGISTRY.units
            and (key in priced or not priced.isdisjoint(REGISTRY.ancestor_usage_keys(key)))
            for key, value in units.items()
        )

    def _cost_with_units(self, usage: Usage, units: Units) -> Decimal:
        """`cost` with units: genai-prices' decomposition over every reported key, floats (seconds) included (the
        loop of `cost` generalised, kept apart so that records without units keep its integer-only loop)."""
        reported: dict[str, int | float] = dict(zip(FIELD_KEYS, usage, strict=True))
        for key, value in self._billed(units).items():
            if key in REGISTRY.units and key not in reported and key != REQUESTS:  # `images` is no genai-prices unit
                reported[key] = value
        positive = [REGISTRY.units[key] for key, value in reported.items() if value > 0]
        input_tokens = usage[0]
        leaves: list[UsageValue] = []
        total = _ZERO
        for (_, price, per, descendants), unit in zip(self._terms, self._counted, strict=True):
            count: UsageValue
            if unit.usage_key in reported:
                count = reported[unit.usage_key]
            elif _inferred_is_refused(unit, positive):
                raise ValueError(f"invalid usage: {unit.usage_key} must be reported with its parts")
            else:
                count = 0
            if descendants:
                count = subtract_usage_values(count, [leaves[j] for j in descendants])
            if count < 0:
                raise ValueError(f"invalid usage: a unit more specific than {unit.usage_key} exceeds it")
            leaves.append(count)
            if count:
                total += calc_unit_price(price, count, input_tokens, per)
        for price, per in self._per_request:
            total += calc_unit_price(price, 1, input_tokens, per)
        return total

    def _billed(self, units: Units) -> Units:
        """The units as billed: audio of at least `minimum_seconds`, as genai-prices' `ModelInfo.calc_price`."""
        if not self._minimum_seconds:
            return units
        seconds = units.get(AUDIO_SECONDS) or units.get(INPUT_AUDIO_SECONDS)
        if seconds is None:
            return units
        billed = max(seconds, self._minimum_seconds) if seconds > 0 else 0
        return {**units, AUDIO_SECONDS: billed, INPUT_AUDIO_SECONDS: billed}


def _refusing_fields(unit: UnitDef) -> Iterable[tuple[int, int]]:
    """The token fields (pairs of positions) from which genai-prices refuses to infer `unit` when both are not 0."""
    for i, field in enumerate(_FIELD_UNITS):
        if field is not unit and is_descendant_or_self(unit, field):
            yield i, i
    for (i, a), (j, b) in combinations(enumerate(_FIELD_UNITS), 2):
        if _joins(unit, a, b):
            yield i, j


def _inferred_is_refused(unit: UnitDef, positive: list[UnitDef]) -> bool:
    """Whether genai-prices refuses to infer an unreported `unit` from the reported units that are not 0: one is
    more specific than it, or two of them overlap exactly in it (`Usage._infer_missing_value`)."""
    if any(other is not unit and is_descendant_or_self(unit, other) for other in positive):
        return True
    return any(_joins(unit, a, b) for a, b in combinations(positive, 2))


def _joins(unit: UnitDef, a: UnitDef, b: UnitDef) -> bool:
    """Whether `a` and `b` overlap without one containing the other, exactly in `unit`."""
    return (
        a.is_compatible_with(b)
        and not is_descendant_or_self(a, b)
        and not is_descendant_or_self(b, a)
        and dict(unit.dimensions) == {**a.dimensions, **b.dimensions}
    )


def to_nusd(usd: Decimal) -> int:
    """USD -> integer nano-USD, rounded half to even."""
    return int(usd.scaleb(9).to_integral_value(ROUND_HALF_EVEN))
