"""Attributes of one GenAI span or audit event -> a `Record`.

Reads the GenAI semantic conventions and the names other instrumentations use for the same things: llmtally's
own audit events and spans, the official OpenTelemetry GenAI instrumentations, the Anthropic SDK's own spans,
OpenLLMetry (`gen_ai.*` / `llm.*`) and OpenLIT.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .limits import count, seconds, unit
from .record import STATUS_ERROR, STATUS_SUCCESS, Record
from .units import ATTRIBUTE_PREFIX, UNIT_KEYS

# First present key wins.
_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens")
_TOTAL = ("llmtally.usage.total_tokens", "llm.usage.total_tokens", "gen_ai.usage.total_tokens")
_CACHE_READ = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
_CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
)
_CACHE_WRITE_1H = ("llmtally.usage.cache_creation.1h.input_tokens",)
_INPUT_AUDIO = ("llmtally.usage.audio.input_tokens",)
_OUTPUT_AUDIO = ("llmtally.usage.audio.output_tokens",)
_WEB_SEARCHES = ("llmtally.usage.web_searches",)
_REASONING = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens")
_TTFT = ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token", "gen_ai.server.ttft")
_USER = ("user.id", "enduser.id", "gen_ai.request.user", "llm.user")
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
_MODEL = ("gen_ai.request.model", "llm.request.model")
# The tier that served the request, then the one asked for ("auto" asks for none).
_SERVED_TIER = ("llmtally.service_tier", "openai.response.service_tier", "gen_ai.openai.response.service_tier")
_ASKED_TIER = ("openai.request.service_tier", "gen_ai.openai.request.service_tier")
_OPERATIONS = {"completion": "text_completion", "embedding": "embeddings", "rerank": "rerank"}
LLM_OPERATIONS = frozenset(
    {
        "chat",
        "text_completion",
        "generate_content",
        "embeddings",
        "completion",
        "embedding",
        # llmtally's own, for the operations the semconv does not name yet
        "rerank",
        "image_generation",
        "image_edit",
        "text_to_speech",
        "transcription",
        "translation",
    }
)
_RATELIMIT = "llmtally.ratelimit."
# `llmtally.usage.unit.<key>` -> key, in key order. Other keys under the prefix (a unit this genai-prices does not
# know, or one the record has a field for) are ignored: the record is kept without them.
_UNIT_ATTRIBUTES = {ATTRIBUTE_PREFIX + key: key for key in sorted(UNIT_KEYS)}
_UNIT_NAMES = frozenset(_UNIT_ATTRIBUTES)


def first(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        found = attrs.get(key)
        if found is not None:
            return found
    return None


def _found(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, Any]:
    """The first present key of `keys` and its value (the first key and None when none is)."""
    for key in keys:
        found = attrs.get(key)
        if found is not None:
            return key, found
    return keys[0], None


def _tokens(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> int:
    """The first present count of `keys` (see `limits.count`); 0 when none is."""
    for key in keys:
        found = attrs.get(key)
        if found is not None:
            return found if type(found) is int else count(found, key)  # the usual case without a call
    return 0


def _http_status(found: Any) -> int | None:
    """An HTTP status code; None when absent or not one (it only describes the record)."""
    if isinstance(found, str) and found.isdigit():
        found = int(found)
    if isinstance(found, int) and not isinstance(found, bool) and 100 <= found <= 999:
        return int(found)
    return None


def _str(found: Any) -> str | None:
    return str(found) if found not in (None, "") else None


def _service_tier(attrs: Mapping[str, Any]) -> str | None:
    served = _str(first(attrs, _SERVED_TIER))
    if served is not None:
        return served
    asked = _str(first(attrs, _ASKED_TIER))
    return None if asked == "auto" else asked


def is_llm_call(attrs: Mapping[str, Any]) -> bool:
    """Whether these attributes describe one LLM API request (not an agent, tool or workflow step)."""
    if first(attrs, _MODEL) is None:
        return False
    operation = attrs.get("gen_ai.operation.name") or attrs.get("llm.request.type")
    return operation is None or operation in LLM_OPERATIONS


def to_record(
    attrs: Mapping[str, Any],
    *,
    record_id: str,
    start_ns: int,
    end_ns: int,
    trace_id: str = "",
    span_id: str = "",
    source: str,
    resource: Mapping[str, Any] | None = None,
    span_failed: bool = False,
    status_message: str | None = None,
    peer: str | None = None,
) -> Record:
    """The record these attributes describe. Raises `limits.Invalid` for a value no record may hold (see
    `limits.check` for the rest)."""
    resource = resource or {}
    input_tokens = _tokens(attrs, _INPUT)
    output_tokens = _tokens(attrs, _OUTPUT)
    operation = attrs.get("gen_ai.operation.name") or attrs.get("llm.request.type") or "chat"
    cache_write_1h = _tokens(attrs, _CACHE_WRITE_1H)
    error_type = _str(attrs.get("error.type"))
    failed = error_type is not None or span_failed
    duration = seconds(attrs.get("llmtally.duration"), "llmtally.duration")
    ttft_key, ttft = _found(attrs, _TTFT)
    events = attrs.get("llmtally.events")
    reasons = attrs.get("gen_ai.response.finish_reasons")
    stream = attrs.get("gen_ai.request.stream", attrs.get("llm.is_streaming"))
    return Record(
        record_id=record_id,
        start_time_ns=start_ns,
        end_time_ns=end_ns,
        trace_id=trace_id,
        span_id=span_id,
        provider=str(first(attrs, _PROVIDER) or "unknown"),
        operation=_OPERATIONS.get(str(operation), str(operation)),
        request_model=str(first(attrs, _MODEL) or ""),
        response_model=str(attrs.get("gen_ai.response.model") or ""),
        status=STATUS_ERROR if failed else STATUS_SUCCESS,
        http_status=_http_status(attrs.get("http.response.status_code")),
        error_type=error_type or ("_OTHER" if failed else None),
        error_message=_str(attrs.get("llmtally.error.message")) or (status_message if failed else None),
        duration_s=duration if duration is not None else max(end_ns - start_ns, 0) / 1e9,
        ttft_s=seconds(ttft, ttft_key),
        stream=bool(stream),
        stream_outcome=_str(attrs.get("llmtally.stream.outcome")),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=_tokens(attrs, _TOTAL) or input_tokens + output_tokens,
        cached_tokens=_tokens(attrs, _CACHE_READ),
        cache_write_tokens=max(_tokens(attrs, _CACHE_WRITE), cache_write_1h),  # a total is never below its part
        cache_write_1h_tokens=cache_write_1h,
        reasoning_tokens=_tokens(attrs, _REASONING),
        input_audio_tokens=_tokens(attrs, _INPUT_AUDIO),
        output_audio_tokens=_tokens(attrs, _OUTPUT_AUDIO),
        web_searches=_tokens(attrs, _WEB_SEARCHES),
        units=_units(attrs),
        usage_source=str(attrs.get("llmtally.usage.source") or _usage_source(attrs)),
        service_tier=_service_tier(attrs),
        speed=_str(attrs.get("llmtally.speed")),
        user_id=_str(first(attrs, _USER)),
        api_key=_str(attrs.get("llmtally.api_key")),
        feature=_str(attrs.get("llmtally.feature")),
        department=_str(attrs.get("llmtally.department")),
        environment=_str(
            attrs.get("deployment.environment.name")
            or resource.get("deployment.environment.name")
            or resource.get("deployment.environment")
        ),
        service=_str(resource.get("service.name")),
        source_ip=_str(attrs.get("client.address")) or peer,
        response_id=_str(attrs.get("gen_ai.response.id")),
        request_id=_str(attrs.get("llmtally.provider.request_id")),
        finish_reasons=[str(r) for r in reasons] if isinstance(reasons, (list, tuple)) else [],
        events=_json_list(events),
        ratelimits=_ratelimits(attrs),
        input_messages=_payload(attrs.get("gen_ai.input.messages")),
        output_messages=_payload(attrs.get("gen_ai.output.messages")),
        source=source,
    )


def _units(attrs: Mapping[str, Any]) -> dict[str, int | float]:
    """The known `llmtally.usage.unit.*` attributes by unit key (see `limits.unit`); {} when none (most records)."""
    if _UNIT_NAMES.isdisjoint(attrs):
        return {}
    return {key: unit(found, key) for name, key in _UNIT_ATTRIBUTES.items() if (found := attrs.get(name)) is not None}


def _usage_source(attrs: Mapping[str, Any]) -> str:
    """Where the token counts come from, for telemetry that does not say: the provider when any count is there."""
    return "provider" if any(k in attrs for k in (*_INPUT, *_OUTPUT)) else "none"


def _json_list(found: Any) -> list[dict[str, Any]]:
    if isinstance(found, str):
        try:
            parsed = json.loads(found)
        except ValueError:
            return []
        return [e for e in parsed if isinstance(e, dict)] if isinstance(parsed, list) else []
    return []


_RATELIMIT_KEYS = tuple(
    (f"{kind}.{which}", f"{_RATELIMIT}{kind}.{which}")
    for kind in ("requests", "tokens", "input_tokens", "output_tokens")
    for which in ("limit", "remaining")
)


def _ratelimits(attrs: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, key in _RATELIMIT_KEYS:
        found = attrs.get(key)
        if isinstance(found, (int, float)) and not isinstance(found, bool) and math.isfinite(found):
            out[name] = float(found)
    return out


def _payload(found: Any) -> str | None:
    if found is None:
        return None
    return found if isinstance(found, str) else json.dumps(found, default=str)
