"""Prices records: `pricing.overrides` first, then the genai-prices catalog, as of each request's start time."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from typing import Protocol

from genai_prices.types import ModelPrice, TieredPrices

from ..normalise.record import Record
from ..normalise.units import AUDIO_SECONDS, AUDIO_SECONDS_PARTS, CHARACTERS, FIELD_KEYS, IMAGES, INPUT_AUDIO_SECONDS
from .catalog import Catalog, CatalogPrice, catalog_age_seconds, catalog_version
from .config import PriceOverride, PricingConfig
from .rate import Rate, Units, Usage, to_nusd

UNPRICED = "unpriced"  # a record's price source without a price; also the `type` of the event saying why
_LISTED = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
_ONE = Decimal(1)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PriceInfo:
    """A model's prices in USD per million tokens (None: not priced separately) and where they come from.

    `tiers` lists (price, input tokens above which it applies, USD per million tokens) for tiered prices, whose
    base price is the one in the per-mtok field.
    """

    source: str
    provider: str | None
    model: str
    input_per_mtok: Decimal | None
    output_per_mtok: Decimal | None
    cache_read_per_mtok: Decimal | None
    cache_write_per_mtok: Decimal | None
    cache_write_1h_per_mtok: Decimal | None = None  # writes to a 1-hour cache (Anthropic), when priced apart
    tiers: tuple[tuple[str, int, Decimal], ...] = ()

    def as_json(self) -> dict[str, object]:
        """The prices as JSON-ready values (decimal strings, exact)."""

        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "source": self.source,
            "provider": self.provider,
            "model": self.model,
            "input_per_mtok_usd": text(self.input_per_mtok),
            "output_per_mtok_usd": text(self.output_per_mtok),
            "cache_read_per_mtok_usd": text(self.cache_read_per_mtok),
            "cache_write_per_mtok_usd": text(self.cache_write_per_mtok),
            "cache_write_1h_per_mtok_usd": text(self.cache_write_1h_per_mtok),
            "tiers": [
                {"price": name, "above_input_tokens": start, "per_mtok_usd": str(price)}
                for name, start, price in self.tiers
            ],
        }


class _Schedule(Protocol):
    source: str

    def rate_at(self, time_ns: int, tier: str | None = None, speed: str | None = None) -> Rate: ...


class _OverrideRate(Rate):
    """A configured price: the tokens as a genai-prices `ModelPrice`, plus the entry's per-unit prices."""

    __slots__ = ("_per_image", "_per_mchars", "_per_minute", "_unit_keys")

    def __init__(self, override: PriceOverride) -> None:
        super().__init__(
            ModelPrice(
                input_mtok=override.input_per_mtok,
                output_mtok=override.output_per_mtok,
                cache_read_mtok=override.cache_read_per_mtok,
                cache_write_mtok=override.cache_write_per_mtok,
            )
        )
        self._per_image = override.per_image_usd
        self._per_minute = override.per_audio_minute_usd
        self._per_mchars = override.per_million_characters_usd
        self._unit_keys = tuple(
            key
            for price, keys in (
                (self._per_image, (IMAGES,)),
                (self._per_minute, (AUDIO_SECONDS, INPUT_AUDIO_SECONDS)),
                (self._per_mchars, (CHARACTERS,)),
            )
            if price is not None
            for key in keys
        )

    def cost(self, usage: Usage, units: Units | None = None) -> Decimal:
        total = super().cost(usage, units)
        if units and self._unit_keys:
            total += self._units_cost(units)
        return total

    def covers(self, units: Units) -> bool:
        return any(units.get(key) for key in self._unit_keys) or super().covers(units)

    def _units_cost(self, units: Units) -> Decimal:
        """USD for the units the entry prices: images, minutes of audio, millions of input characters."""
        total = _ZERO
        if self._per_image is not None:
            total += self._per_image * _decimal(units.get(IMAGES, 0))
        if self._per_minute is not None:
            seconds = units.get(AUDIO_SECONDS, units.get(INPUT_AUDIO_SECONDS, 0))
            total += self._per_minute * _decimal(seconds) / 60
        if self._per_mchars is not None:
            total += self._per_mchars * _decimal(units.get(CHARACTERS, 0)) / 1_000_000
        return total


class _OverridePrice:
    __slots__ = ("_rate", "override", "source")

    def __init__(self, override: PriceOverride) -> None:
        self.override = override
        self.source = f"config:{override.model}"
        self._rate = _OverrideRate(override)

    def rate_at(self, time_ns: int, tier: str | None = None, speed: str | None = None) -> Rate:
        return self._rate  # a configured price is the price, whatever the tier or speed


@dataclass(frozen=True, slots=True)
class _Resolved:
    schedule: _Schedule
    factor: Decimal  # 1 + markup
    fee_nusd: Decimal

    def customer_nusd(self, provider_nusd: int) -> int:
        if self.factor == _ONE and not self.fee_nusd:
            return provider_nusd
        return int((provider_nusd * self.factor + self.fee_nusd).to_integral_value(ROUND_HALF_EVEN))


class Pricer:
    """Fills a record's costs, `price_source` and `priced`; resolutions are cached per provider and models.

    Customer cost = provider cost x (1 + markup) + fixed fee, from the stored (integer nano-USD) provider cost.
    A record without any usage (tokens or units) costs 0, fixed fee included, when its model has a price. A model
    without a price, a record whose only usage is units its price does not charge, and a usage genai-prices refuses
    leave the costs None with `price_source="unpriced"`, counted in `unpriced_total` / `unpriced_models`. A refused
    usage also gets an event `{"type": "unpriced", "reason": ..., "usage": {...}}` saying why: counts are priced as
    they are, so a part above its total (cache reads above the input) is refused, never raised to a cost.
    """

    max_cached = 10_000  # distinct (provider, response model, request model); the cache restarts past it

    def __init__(self, config: PricingConfig | None = None) -> None:
        self.config = config or PricingConfig()
        self._factor = _ONE + self.config.markup
        self._fee_nusd = self.config.fixed_fee_usd.scaleb(9)
        self._overrides = tuple(_OverridePrice(o) for o in self.config.overrides)
        self._catalog = Catalog()
        self._catalog_prices: dict[tuple[str, str], CatalogPrice] = {}
        self._resolved: dict[tuple[str, str, str], _Resolved | None] = {}
        self._count_lock = threading.Lock()
        self.unpriced_total = 0
        self.unpriced_models: Counter[tuple[str, str]] = Counter()  # (provider, model); at most max_cached keys

    def price(self, record: Record) -> None:
        """Prices `record` in place."""
        if not self._catalog.is_current():
            self._reset()
        key = (record.provider, record.response_model, record.request_model)
        try:
            resolved = self._resolved[key]
        except KeyError:
            resolved = self._resolve(*key)
        usage = _usage(record)
        units: Units = record.units
        if units:
            units = _units(units)
        used = any(usage) or any(units.values())
        if record.events:
            _forget_refusal(record)  # priced again (`llmtally reprice`): a refusal is said again if it still holds
        try:
            cost = _cost(resolved, usage, units, used, record)
        except ValueError as error:  # genai-prices refuses the usage (or the price)
            record.events.append(_refusal(error, usage, units))
            cost = None
        if record.usage_source == "none" and record.status == "success" and not used:
            cost = None  # tokens unknown (e.g. a stream without usage): the cost is unknown, not $0
        if resolved is None or cost is None:
            record.provider_cost_nusd = record.customer_cost_nusd = None
            record.price_source = UNPRICED
            record.priced = False
            self._count_unpriced(record)
            return
        record.provider_cost_nusd = cost
        record.customer_cost_nusd = resolved.customer_nusd(cost) if used else 0
        record.price_source = resolved.schedule.source
        record.priced = True

    def fee_nusd(self, record: Record) -> int:
        """The fixed fee (nano-USD) the pricing in force adds to a priced record's customer cost (0 for a record
        unpriced or charged nothing): statements show it apart from the markup."""
        if not record.priced or not record.customer_cost_nusd:
            return 0
        key = (record.provider, record.response_model, record.request_model)
        resolved = self._resolved[key] if key in self._resolved else self._resolve(*key)
        return 0 if resolved is None else int(resolved.fee_nusd.to_integral_value(ROUND_HALF_EVEN))

    def lookup(
        self, provider: str | None, model: str, when: datetime | None = None, tier: str | None = None
    ) -> PriceInfo | None:
        """The prices that would apply to `model` from `provider` at `when` (default: now) and service `tier`
        (default: standard), or None."""
        if not self._catalog.is_current():
            self._reset()
        resolved = self._resolve(provider or "", model, "")
        if resolved is None:
            return None
        when = when or datetime.now(UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # naive times are UTC, as in genai-prices
        time_ns = int(when.timestamp()) * 10**9 + when.microsecond * 1000
        schedule = resolved.schedule
        prices = schedule.rate_at(time_ns, tier).model_price
        provider_id: str | None
        if isinstance(schedule, CatalogPrice):
            provider_id, model_id = schedule.provider_id, schedule.model_id
        else:
            assert isinstance(schedule, _OverridePrice)
            provider_id, model_id = schedule.override.provider, schedule.override.model
        values = {name: getattr(prices, f"{name}_mtok", None) for name in _LISTED}
        return PriceInfo(
            source=schedule.source,
            provider=provider_id,
            model=model_id,
            input_per_mtok=_base(values["input"]),
            output_per_mtok=_base(values["output"]),
            cache_read_per_mtok=_base(values["cache_read"]),
            cache_write_per_mtok=_base(values["cache_write"]),
            cache_write_1h_per_mtok=_base(values["cache_write_1h"]),
            tiers=tuple(
                (name, tier.start, tier.price)
                for name, value in values.items()
                if isinstance(value, TieredPrices)
                for tier in value.tiers
            ),
        )

    def catalog_version(self) -> str:
        """The genai-prices catalog version prices come from (see `catalog.catalog_version`)."""
        return catalog_version()

    def catalog_age_seconds(self) -> float:
        """Age of the genai-prices data in use, for `llmtally_receiver_price_catalog_age_seconds`."""
        return catalog_age_seconds()

    def _resolve(self, provider: str, response_model: str, request_model: str) -> _Resolved | None:
        models = [m for m in (response_model, request_model) if m]
        resolved = self._match_override(provider, models) or self._match_catalog(provider, models)
        if len(self._resolved) >= self.max_cached:
            self._resolved.clear()
        self._resolved[(provider, response_model, request_model)] = resolved
        return resolved

    def _match_override(self, provider: str, models: list[str]) -> _Resolved | None:
        for model in models:
            for price in self._overrides:
                entry = price.override
                if entry.matches(provider, model):
                    markup = self.config.markup if entry.markup is None else entry.markup
                    fee = self.config.fixed_fee_usd if entry.fixed_fee_usd is None else entry.fixed_fee_usd
                    return _Resolved(price, _ONE + markup, fee.scaleb(9))
        return None

    def _match_catalog(self, provider: str, models: list[str]) -> _Resolved | None:
        for model in models:
            found = self._catalog.find(provider, model)
            if found is not None:
                catalog_provider, info = found
                key = (catalog_provider.id, info.id)
                schedule = self._catalog_prices.get(key)
                if schedule is None:
                    schedule = self._catalog_prices[key] = CatalogPrice(catalog_provider, info, self._catalog.version)
                return _Resolved(schedule, self._factor, self._fee_nusd)
        return None

    def _reset(self) -> None:
        self._catalog = Catalog()
        self._catalog_prices.clear()
        self._resolved.clear()

    def _count_unpriced(self, record: Record) -> None:
        key = (record.provider, record.response_model or record.request_model)
        with self._count_lock:  # receivers price from several threads
            self.unpriced_total += 1
            if key in self.unpriced_models or len(self.unpriced_models) < self.max_cached:
                self.unpriced_models[key] += 1


def _usage(record: Record) -> Usage:
    """The record's `rate.Usage`: its counts as they are (`limits.check` keeps them within 0..10^12)."""
    return (
        record.input_tokens,
        record.cached_tokens,
        record.cache_write_tokens,
        record.output_tokens,
        record.reasoning_tokens,
        record.cache_write_1h_tokens,
        record.input_audio_tokens,
        record.output_audio_tokens,
        record.web_searches,
    )


def _refusal(error: ValueError, usage: Usage, units: Units) -> dict[str, object]:
    """The event that keeps why genai-prices refused a record's usage, with the usage it refused (counts not 0)."""
    named = {key: count for key, count in zip(FIELD_KEYS, usage, strict=True) if count}
    return {"type": UNPRICED, "reason": f"genai-prices refused the usage: {error}", "usage": {**named, **units}}


def _forget_refusal(record: Record) -> None:
    if any(event.get("type") == UNPRICED for event in record.events):
        record.events = [event for event in record.events if event.get("type") != UNPRICED]


def _units(units: Units) -> Units:
    """The record's units for pricing: `audio_seconds`, when not reported, is its parts' sum (input and output)."""
    if AUDIO_SECONDS in units or not any(key in units for key in AUDIO_SECONDS_PARTS):
        return units
    return {**units, AUDIO_SECONDS: sum(units.get(key, 0) for key in AUDIO_SECONDS_PARTS)}


def _cost(resolved: _Resolved | None, usage: Usage, units: Units, used: bool, record: Record) -> int | None:
    """Provider nano-USD at the request's service tier and speed; 0 without usage; None when unpriced, or when the
    only usage is units the price does not charge (an image count under a token price). ValueError when
    genai-prices refuses the price or the usage."""
    if resolved is None:
        return None
    if not used:
        return 0
    rate = resolved.schedule.rate_at(record.start_time_ns, record.service_tier, record.speed)
    if units and not any(usage) and not rate.covers(units):
        return None
    return to_nusd(rate.cost(usage, units))


def _decimal(value: int | float) -> Decimal:
    """A unit's amount as genai-prices reads it (a float by its shortest repr)."""
    return Decimal(value) if type(value) is int else Decimal(repr(value))


def _base(value: Decimal | TieredPrices | None) -> Decimal | None:
    return value.base if isinstance(value, TieredPrices) else value


@cache
def _catalog_pricer() -> Pricer:
    return Pricer()


def lookup(provider: str | None, model: str, when: datetime | None = None, tier: str | None = None) -> PriceInfo | None:
    """The catalog's prices for `model` (no overrides): see `Pricer.lookup`."""
    return _catalog_pricer().lookup(provider, model, when, tier)
