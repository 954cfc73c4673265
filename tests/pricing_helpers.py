"""What genai-prices itself charges, in nano-USD, to check the receiver's prices against: for usage counts, for a
record's own token counts, and for a provider's answer as genai-prices' own usage extractor reads it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import genai_prices

from llmtally.exporter.normalise.record import Record
from llmtally.exporter.price.rate import to_nusd


def usage_cost(
    usage: genai_prices.types.AbstractUsage,
    model: str,
    provider_id: str,
    record: Record | None = None,
    context: Mapping[str, str] | None = None,
) -> int:
    """What genai-prices charges for `usage` of `model`, as of the record's start (now without a record)."""
    when = datetime.fromtimestamp(record.start_time_ns / 1e9, UTC) if record is not None else None
    price = genai_prices.calc_price(
        usage, model, provider_id=provider_id, genai_request_timestamp=when, price_context=context
    )
    return to_nusd(price.total_price)


def record_cost(record: Record, provider_id: str, model: str, context: Mapping[str, str] | None = None) -> int:
    """What genai-prices charges for the record's own token counts, as of its start."""
    usage = genai_prices.Usage(
        input_tokens=record.input_tokens,
        cache_read_tokens=record.cached_tokens,
        cache_write_tokens=record.cache_write_tokens,
        output_tokens=record.output_tokens,
    )
    return usage_cost(usage, model, provider_id, record, context)


def extracted_usage(
    answer: Mapping[str, Any], provider_id: str, flavor: str = "default", *, model: str | None = None
) -> genai_prices.Usage:
    """The usage genai-prices' own extractor reads from a provider's answer. With `model`, the answer names its
    model, and genai-prices reads it as `model`."""
    extracted = genai_prices.extract_usage(answer, provider_id=provider_id, api_flavor=flavor)
    if model is not None:
        assert extracted.model is not None and extracted.model.id == model, extracted.model
    return extracted.usage


def answer_cost(
    answer: Mapping[str, Any],
    model: str,
    provider_id: str,
    record: Record | None = None,
    *,
    flavor: str = "default",
    context: Mapping[str, str] | None = None,
    named: bool = False,
) -> int:
    """genai-prices' own cost of this answer: the usage its extractor reads (`flavor`) priced for `model` as of the
    record's start (now without a record). `named`: the answer names its model, read as `model`."""
    usage = extracted_usage(answer, provider_id, flavor, model=model if named else None)
    return usage_cost(usage, model, provider_id, record, context)
