"""The one shape every LLM request is stored, priced, counted and queried in."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from typing import Any

STATUS_SUCCESS = "success"
STATUS_ERROR = "error"


def usd(nusd: int) -> float:
    """Nano-USD (how costs are kept) -> USD, to the nano-dollar."""
    return round(nusd / 1e9, 9)


@dataclass(slots=True)
class Record:
    """One LLM request.

    `record_id` is the record's identity: the hex span id (16 chars) when the telemetry has one (our audit event and
    our span share it), else a hash of the log record. Another instrumentation's record of the same call has its own
    id; the store keeps one record per call (`store/calls.py`). Times are nanoseconds since the epoch.
    Token counts follow the GenAI semconv: `input_tokens` includes cache reads and writes, `output_tokens` includes
    reasoning. Costs are in nano-USD (1e-9 USD) so that sums are exact; None until priced.
    """

    record_id: str
    start_time_ns: int
    end_time_ns: int
    trace_id: str = ""
    span_id: str = ""
    provider: str = ""
    operation: str = ""
    request_model: str = ""
    response_model: str = ""
    status: str = STATUS_SUCCESS
    http_status: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    duration_s: float = 0.0
    ttft_s: float | None = None
    stream: bool = False
    stream_outcome: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those written to a 1-hour cache (Anthropic), priced apart
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0  # of input_tokens, audio (priced apart)
    output_audio_tokens: int = 0  # of output_tokens, audio
    web_searches: int = 0  # server-side web searches billed with the request (Anthropic's web search tool)
    # Other billed units by genai-prices usage key (`input_image_tokens`, `input_characters`, `audio_seconds`...) or
    # `images`: each within its ancestors as in genai-prices (input_image_tokens within input_tokens). See `units`.
    units: dict[str, int | float] = field(default_factory=dict)
    usage_source: str = "none"  # provider | partial | none
    service_tier: str | None = None  # the tier that served it (priority, flex, batch...); priced at
    speed: str | None = None  # the inference speed mode that served it (Anthropic's `fast`); priced at
    provider_cost_nusd: int | None = None
    customer_cost_nusd: int | None = None
    price_source: str | None = None  # e.g. "genai-prices 0.2.3 openai/gpt-4o-mini", "config:my-model", "unpriced"
    priced: bool = False
    user_id: str | None = None
    api_key: str | None = None
    feature: str | None = None
    department: str | None = None
    environment: str | None = None
    service: str | None = None
    source_ip: str | None = None
    response_id: str | None = None
    request_id: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # retries, fallbacks
    ratelimits: dict[str, float] = field(default_factory=dict)  # "requests.remaining" -> value, ...
    input_messages: str | None = None  # payloads, only when the app captured them
    output_messages: str | None = None
    source: str = "llmtally"  # which instrumentation produced it: llmtally, otel-genai, openllmetry, anthropic, openlit
    parent_span_id: str = ""  # hex, of a span's parent (de-duplication evidence: nested instrumentations)
    # The sources of every record of this call when several instrumentations recorded it (the store keeps one
    # record per call, the richest); empty when only `source` did.
    seen_by: list[str] = field(default_factory=list)
    # The model parameters the request asked for (temperature, max_tokens...: `request_params.py`, never content).
    params: dict[str, Any] = field(default_factory=dict)
    # Custom dimensions by key (`dimensions:` in llmtally.yaml; only declared keys are kept).
    dimensions: dict[str, str] = field(default_factory=dict)


FIELDS = tuple(f.name for f in fields(Record))
# A record as the tuple of its fields, in order (`Record(*values)` makes it again): what worker processes send, as a
# tuple pickles in a third of the time a dataclass takes.
as_values: operator.attrgetter[Any] = operator.attrgetter(*FIELDS)
