"""A genai-prices `ModelPrice` compiled once, so that pricing one usage costs microseconds instead of ~60.

`ModelPrice.calc_price` re-validates the price and re-derives the usage decomposition on every call. `Rate` does
both once, with genai-prices' own validation, and per usage repeats only what depends on it: the leaf counts of
the priced units (exactly as `genai_prices.decompose.compute_leaf_values`, in integers) and genai-prices'
`calc_unit_price`, which applies the tiers. The result is the Decimal `total_price` `calc_price` would give.

Usage follows genai-prices' (and the GenAI semconv's) convention: `input_tokens` counts ALL input, cache reads and
writes included; `output_tokens` counts all output, reasoning included. More specific units are subtracted from
their ancestors, so uncached input is billed at the input price and cache reads at the cache read price.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from genai_prices.data_units import unit_data
from genai_prices.decompose import is_descendant_or_self
from genai_prices.types import ModelPrice, TieredPrices, calc_unit_price
from genai_prices.units import UnitRegistry
from genai_prices.validation import validate_priced_units

REGISTRY = UnitRegistry(unit_data)
# Positions of the usage a `Record` reports, in `Rate.cost`'s arguments.
_SOURCES = {
    "input_tokens": 0,
    "cache_read_tokens": 1,
    "cache_write_tokens": 2,
    "output_tokens": 3,
    "output_reasoning_tokens": 4,
    "cache_write_1h_tokens": 5,
    "input_audio_tokens": 6,
    "output_audio_tokens": 7,
    "web_searches": 8,
}
# (input incl. cache and audio, cache read, cache write incl. 1-hour, output incl. reasoning and audio, reasoning,
# 1-hour cache write, input audio, output audio, web searches)
Usage = tuple[int, int, int, int, int, int, int, int, int]
_REQUESTS = "requests"
_ZERO = Decimal(0)


class Rate:
    """The cost of a usage under one `ModelPrice`, identical to `model_price.calc_price(usage)['total_price']`."""

    __slots__ = ("_per_request", "_terms", "model_price")

    def __init__(self, model_price: ModelPrice) -> None:
        self.model_price = model_price
        priced = [
            (unit, price)
            for unit in REGISTRY.units.values()
            if isinstance(price := getattr(model_price, unit.price_key, None), Decimal | TieredPrices)
        ]
        validate_priced_units([unit for unit, _ in priced], REGISTRY)
        # Most specific first, as compute_leaf_values: a unit's descendants are then already computed.
        counted = sorted(
            ((u, p) for u, p in priced if u.usage_key != _REQUESTS),
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
        self._per_request = tuple((price, unit.per) for unit, price in priced if unit.usage_key == _REQUESTS)

    def cost(self, usage: Usage) -> Decimal:
        """USD for a `Usage` (token counts, each more specific one included in its ancestor's)."""
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


def to_nusd(usd: Decimal) -> int:
    """USD -> integer nano-USD, rounded half to even."""
    return int(usd.scaleb(9).to_integral_value(ROUND_HALF_EVEN))
