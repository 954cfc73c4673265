"""The genai-prices catalog read for savings advice: a model's catalog price, the other models its provider sells
for the same kind of request (chat or embedding), and its batch price when the catalog lists one."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices

from .catalog import Catalog, CatalogPrice
from .rate import Rate, Usage

CHAT, EMBEDDING = "chat", "embedding"
# Operations that are neither chat nor embeddings (images, speech, reranking): no like-for-like model is offered.
_OTHER_OPERATIONS = frozenset(
    {"rerank", "image_generation", "image_edit", "text_to_speech", "transcription", "translation"}
)
# Catalog models whose names say they serve another kind of request than text chat (or a fine-tuned model).
_NOT_CHAT = ("embed", "audio", "tts", "whisper", "transcribe", "image", "dall-e", "realtime", "moderation", "search")


def kind_of_operation(operation: str) -> str | None:
    """chat or embedding for a record's operation; None for the others."""
    if operation == "embeddings":
        return EMBEDDING
    return None if operation in _OTHER_OPERATIONS else CHAT


def _kind_of_model(model: ModelInfo, price: ModelPrice) -> str | None:
    name = model.id.lower()
    if "embed" in name:
        return EMBEDDING if price.input_mtok is not None else None
    if any(word in name for word in _NOT_CHAT) or name.startswith("ft:"):
        return None
    return CHAT if price.input_mtok is not None and price.output_mtok is not None else None


def per_mtok(value: Decimal | TieredPrices | None) -> Decimal | None:
    """A per-million-token price (the base price of tiered ones)."""
    return value.base if isinstance(value, TieredPrices) else value


class Alternatives:
    """Catalog prices in force at `time_ns` for savings advice."""

    def __init__(self, time_ns: int, catalog: Catalog | None = None) -> None:
        self.time_ns = time_ns
        self.catalog = catalog or Catalog()

    def price(self, provider: str, model: str) -> tuple[Provider, ModelInfo, CatalogPrice] | None:
        """The catalog's price of our provider name and model name, or None."""
        found = self.catalog.find(provider, model)
        if found is None:
            return None
        return found[0], found[1], CatalogPrice(found[0], found[1], self.catalog.version)

    def rate(self, price: CatalogPrice, tier: str | None = None) -> Rate:
        return price.rate_at(self.time_ns, tier)

    def others(self, provider: Provider, model: ModelInfo, kind: str) -> Iterator[CatalogPrice]:
        """The provider's other current models of `kind` (deprecated ones left out) that take the usage's tokens."""
        for other in provider.models:
            if other is model or other.deprecated:
                continue
            try:
                candidate = CatalogPrice(provider, other, self.catalog.version)
                rate = candidate.rate_at(self.time_ns)
            except (ValueError, LookupError):  # a price genai-prices refuses, or none in force
                continue
            if _kind_of_model(other, rate.model_price) == kind:
                yield candidate

    def batch_rate(self, price: CatalogPrice) -> Rate | None:
        """The model's batch price (genai-prices' `processing: batch` variant), or None when the catalog lists
        none."""
        standard, batch = self.rate(price), self.rate(price, "batch")
        return None if batch.model_price is standard.model_price or batch.model_price == standard.model_price else batch


def cost_usd(rate: Rate, usage: Usage) -> Decimal | None:
    """USD of one request's usage at `rate`; None when genai-prices refuses the usage for that price."""
    try:
        return rate.cost(usage)
    except ValueError:
        return None
