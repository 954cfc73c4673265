"""The genai-prices catalog: our provider names -> its provider ids, model matching, and prices as of a time."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider, TimeOfDateConstraint

from .rate import Rate

# GenAI semconv `gen_ai.provider.name` values (and common spellings) -> genai-prices provider ids. A name that is
# already a genai-prices id (e.g. "cerebras", "moonshotai") is used as is.
PROVIDER_IDS: Mapping[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "mistral_ai": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "openrouter": "openrouter",
    "together": "together",
    "together_ai": "together",
    "fireworks": "fireworks",
    "fireworks_ai": "fireworks",
    "litellm": "litellm",  # genai-prices reads the provider from a "provider/model" name
}
# Providers whose models the catalog's vendor prices do not describe (self-hosted, or hosted at other prices):
# priced by `pricing.overrides` only, never by a model-name match.
NOT_IN_CATALOG = frozenset({"ollama", "vllm", "lm_studio", "llama_cpp", "tgi", "localai", "ibm.watsonx.ai"})
# Providers whose client is also used against other APIs (the OpenAI SDK with another base URL): when the model is
# not theirs, it is matched by name alone, as for unknown providers, "openai_compatible" and no provider at all.
MODEL_NAME_FALLBACK = frozenset({"openai"})

_DAY_NS = 86_400 * 10**9
# Models whose audio genai-prices bills for at least this many seconds per request (`ModelInfo.calc_price`).
MINIMUM_SECONDS: Mapping[tuple[str, str], int] = {
    ("groq", "whisper-large-v3"): 10,
    ("groq", "whisper-large-v3-turbo"): 10,
}


def catalog_version() -> str:
    """The genai-prices version in use, with the fetch time when prices were updated at run time."""
    return _version(data_snapshot.get_snapshot())


def _version(snapshot: data_snapshot.DataSnapshot) -> str:
    if snapshot.from_auto_update:
        return f"{genai_prices.__version__}+{snapshot.timestamp:%Y%m%dT%H%M%S}"
    return genai_prices.__version__


def catalog_age_seconds() -> float:
    """Seconds since the price data in use was fetched (run-time update) or installed (bundled snapshot)."""
    snapshot = data_snapshot.get_snapshot()
    fetched = snapshot.timestamp.timestamp() if snapshot.from_auto_update else _bundled_data_mtime()
    return max(0.0, time.time() - fetched)


@cache
def _bundled_data_mtime() -> float:
    from genai_prices import data

    return os.path.getmtime(data.__file__)


class Catalog:
    """One genai-prices data snapshot, with our provider names mapped onto it."""

    def __init__(self, snapshot: data_snapshot.DataSnapshot | None = None) -> None:
        self.snapshot = snapshot or data_snapshot.get_snapshot()
        self.version = _version(self.snapshot)
        self._ids = frozenset(p.id for p in self.snapshot.providers)

    def is_current(self) -> bool:
        """False once genai-prices has switched to another snapshot (prices updated at run time)."""
        return self.snapshot is data_snapshot.get_snapshot()

    def find(self, provider: str, model: str) -> tuple[Provider, ModelInfo] | None:
        """The catalog's provider and model for our provider name and a model name, or None."""
        name = provider.strip().lower()
        if not model or name in NOT_IN_CATALOG:
            return None
        provider_id = PROVIDER_IDS.get(name) or (name if name in self._ids else None)
        if provider_id is not None:
            try:
                return self.snapshot.find_provider_model(model, None, provider_id, None)
            except LookupError:
                if name not in MODEL_NAME_FALLBACK:
                    return None
        try:
            return self.snapshot.find_provider_model(model, None, None, None)
        except LookupError:
            return None


_NO_TIER = frozenset({"", "auto"})  # request settings, not the tier a request was served at
_NO_SPEED = frozenset({"", "standard"})
MAX_TIER_RATES = 4096  # (day, tier, speed) prices kept per model; the cache restarts past it


def price_context(tier: str | None, speed: str | None = None) -> Mapping[str, str] | None:
    """genai-prices' price context for the service tier and the speed a request was served at: `batch` is its
    `processing` (a way of submitting, not a tier there), any other tier its `service_tier`, a speed other than
    `standard` (Anthropic's `fast`) its `speed`; None for neither (standard prices). A tier or speed with no
    published variant (`default`, `standard`, `on_demand`, ...) gets the standard prices."""
    context: dict[str, str] = {}
    if tier is not None and tier.strip() not in _NO_TIER:
        tier = tier.strip()
        context.update({"processing": "batch"} if tier == "batch" else {"service_tier": tier})
    if speed is not None and speed.strip() not in _NO_SPEED:
        context["speed"] = speed.strip()
    return context or None


def utc(time_ns: int) -> datetime:
    """Nanoseconds since the epoch -> an aware UTC datetime (microseconds, truncated)."""
    return datetime.fromtimestamp(time_ns // 10**9, UTC).replace(microsecond=time_ns // 1000 % 10**6)


class CatalogPrice:
    """One catalog model's prices over time; each distinct `ModelPrice` is compiled once."""

    __slots__ = (
        "_by_day",
        "_by_price",
        "_by_tier",
        "_minimum_seconds",
        "_model",
        "_static",
        "_tiered",
        "_time_of_day",
        "model_id",
        "provider_id",
        "source",
    )

    def __init__(self, provider: Provider, model: ModelInfo, version: str) -> None:
        self.provider_id = provider.id
        self.model_id = model.id
        self.source = f"genai-prices {version} {provider.id}/{model.id}"
        self._model = model
        self._minimum_seconds = MINIMUM_SECONDS.get((provider.id, model.id), 0)
        self._static = self._rate(model.prices) if isinstance(model.prices, ModelPrice) else None
        self._time_of_day = not isinstance(model.prices, ModelPrice) and any(
            isinstance(p.constraint, TimeOfDateConstraint) for p in model.prices
        )
        self._by_day: dict[int, Rate] = {}
        self._by_price: dict[int, Rate] = {}
        # Tier variants apply to the provider's own models only, as in genai-prices (not to a fallback provider's).
        self._tiered = bool(model.price_variants) and any(m is model for m in provider.models)
        self._by_tier: dict[tuple[int, tuple[tuple[str, str], ...]], Rate] = {}

    def rate_at(self, time_ns: int, tier: str | None = None, speed: str | None = None) -> Rate:
        """The price in force at `time_ns` (start dates by UTC day, off-peak hours by time of day) for requests
        served at service `tier` and `speed` (see `price_context`)."""
        context = price_context(tier, speed) if self._tiered else None
        if context is not None:
            return self._tier_rate(time_ns, context)
        if self._static is not None:
            return self._static
        if self._time_of_day:
            return self._compiled(self._model.get_prices(utc(time_ns)))
        day = time_ns // _DAY_NS
        rate = self._by_day.get(day)
        if rate is None:
            rate = self._by_day[day] = self._compiled(self._model.get_prices(utc(day * _DAY_NS)))
        return rate

    def _tier_rate(self, time_ns: int, context: Mapping[str, str]) -> Rate:
        if self._time_of_day:
            return self._rate(self._model.get_prices(utc(time_ns), context))
        key = (time_ns // _DAY_NS, tuple(context.items()))
        rate = self._by_tier.get(key)
        if rate is None:
            if len(self._by_tier) >= MAX_TIER_RATES:
                self._by_tier.clear()
            rate = self._by_tier[key] = self._rate(self._model.get_prices(utc(key[0] * _DAY_NS), context))
        return rate

    def _compiled(self, model_price: ModelPrice) -> Rate:
        rate = self._by_price.get(id(model_price))
        if rate is None or rate.model_price is not model_price:
            rate = self._by_price[id(model_price)] = self._rate(model_price)
        return rate

    def _rate(self, model_price: ModelPrice) -> Rate:
        return Rate(model_price, self._minimum_seconds)
