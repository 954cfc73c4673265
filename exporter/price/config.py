"""The `pricing:` section of llmtally.yaml: markup, fixed fee and price overrides."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fnmatch import translate
from typing import Any

_GLOB_CHARS = frozenset("*?[")
_TOP_KEYS = frozenset({"markup", "fixed_fee_usd", "overrides"})
_OVERRIDE_KEYS = frozenset(
    {
        "model",
        "provider",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "per_image_usd",
        "per_audio_minute_usd",
        "per_million_characters_usd",
        "markup",
        "fixed_fee_usd",
    }
)
# Prices of units other than tokens: with one of them, the token prices may be left out (tokens then cost nothing).
_UNIT_PRICE_KEYS = ("per_image_usd", "per_audio_minute_usd", "per_million_characters_usd")


class PricingConfigError(ValueError):
    """An invalid `pricing:` section; `key` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class PriceOverride:
    """A configured price for models matching `model` (exact name or glob, case-insensitive), USD per million tokens,
    and per unit of the record's `units`: per generated image (`images`), per minute of audio (`audio_seconds`, else
    `input_audio_seconds`), per million input characters (`input_characters`).

    `markup` and `fixed_fee_usd`, when set, replace the global ones for records priced by this entry.
    """

    model: str
    input_per_mtok: Decimal | None = None
    output_per_mtok: Decimal | None = None
    provider: str | None = None
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    per_image_usd: Decimal | None = None
    per_audio_minute_usd: Decimal | None = None
    per_million_characters_usd: Decimal | None = None
    markup: Decimal | None = None
    fixed_fee_usd: Decimal | None = None
    _glob: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if _GLOB_CHARS.intersection(self.model):
            object.__setattr__(self, "_glob", re.compile(translate(self.model.lower())))

    def matches(self, provider: str, model: str) -> bool:
        """Whether this entry prices `model` (any case) from `provider`."""
        if self.provider is not None and self.provider.lower() != provider.lower():
            return False
        if self._glob is not None:
            return self._glob.match(model.lower()) is not None
        return self.model.lower() == model.lower()


@dataclass(frozen=True)
class PricingConfig:
    """Customer cost = provider cost x (1 + markup) + fixed_fee_usd per request; overrides win over the catalog."""

    markup: Decimal = Decimal(0)
    fixed_fee_usd: Decimal = Decimal(0)
    overrides: tuple[PriceOverride, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PricingConfig:
        """Parses the `pricing:` mapping; raises `PricingConfigError` naming the bad key."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise PricingConfigError("pricing", "must be a mapping")
        _no_unknown_keys(data, _TOP_KEYS, "pricing")
        raw_overrides = data.get("overrides") or []
        if not isinstance(raw_overrides, list):
            raise PricingConfigError("pricing.overrides", "must be a list")
        return cls(
            markup=_markup(data, "markup", "pricing") or Decimal(0),
            fixed_fee_usd=_amount(data, "fixed_fee_usd", "pricing") or Decimal(0),
            overrides=tuple(_override(entry, f"pricing.overrides[{i}]") for i, entry in enumerate(raw_overrides)),
        )


def _override(entry: object, where: str) -> PriceOverride:
    if not isinstance(entry, Mapping):
        raise PricingConfigError(where, "must be a mapping")
    _no_unknown_keys(entry, _OVERRIDE_KEYS, where)
    model = entry.get("model")
    if not isinstance(model, str) or not model.strip():
        raise PricingConfigError(f"{where}.model", "required: a model name or a glob such as 'my-llama-*'")
    provider = entry.get("provider")
    if provider is not None and (not isinstance(provider, str) or not provider.strip()):
        raise PricingConfigError(f"{where}.provider", f"must be a provider name, got {provider!r}")
    per_image, per_minute, per_mchars = (_amount(entry, key, where) for key in _UNIT_PRICE_KEYS)
    tokens = _required_amount if per_image is None and per_minute is None and per_mchars is None else _amount
    return PriceOverride(
        model=model.strip(),
        provider=provider.strip() if provider is not None else None,
        input_per_mtok=tokens(entry, "input_per_mtok", where),
        output_per_mtok=tokens(entry, "output_per_mtok", where),
        cache_read_per_mtok=_amount(entry, "cache_read_per_mtok", where),
        cache_write_per_mtok=_amount(entry, "cache_write_per_mtok", where),
        per_image_usd=per_image,
        per_audio_minute_usd=per_minute,
        per_million_characters_usd=per_mchars,
        markup=_markup(entry, "markup", where),
        fixed_fee_usd=_amount(entry, "fixed_fee_usd", where),
    )


def _no_unknown_keys(data: Mapping[Any, Any], allowed: frozenset[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise PricingConfigError(f"{where}.{key}", f"unknown key (expected one of {', '.join(sorted(allowed))})")


def _number(data: Mapping[Any, Any], key: str, where: str) -> Decimal | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise PricingConfigError(f"{where}.{key}", f"expected a number, got {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise PricingConfigError(f"{where}.{key}", f"expected a number, got {value!r}") from None
    if not number.is_finite():
        raise PricingConfigError(f"{where}.{key}", f"expected a finite number, got {value!r}")
    return number


def _amount(data: Mapping[Any, Any], key: str, where: str) -> Decimal | None:
    number = _number(data, key, where)
    if number is not None and number < 0:
        raise PricingConfigError(f"{where}.{key}", f"must not be negative, got {data[key]!r}")
    return number


def _required_amount(data: Mapping[Any, Any], key: str, where: str) -> Decimal:
    number = _amount(data, key, where)
    if number is None:
        raise PricingConfigError(
            f"{where}.{key}",
            f"required: USD per million tokens (unless the entry has one of {', '.join(_UNIT_PRICE_KEYS)})",
        )
    return number


def _markup(data: Mapping[Any, Any], key: str, where: str) -> Decimal | None:
    number = _number(data, key, where)
    if number is not None and number <= -1:
        raise PricingConfigError(f"{where}.{key}", f"is a fraction (0.2 = +20%) above -1, got {data[key]!r}")
    return number
