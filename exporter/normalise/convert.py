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

from ...instrumentation.errors import OTHER
from .dimensions import dimensions
from .limits import MAX_LONG_TEXT, Invalid, count, seconds, shown, text, unit
from .peers import error_type as mapped_error_type
from .peers import semconv_counts
from .record import STATUS_ERROR, STATUS_SUCCESS, Record
from .request_params import request_params
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
_OPERATION = ("gen_ai.operation.name", "llm.request.type")
# Whether the answer was streamed: the semconv's, OpenLLMetry's (current, then older).
_STREAM = ("gen_ai.request.stream", "gen_ai.is_streaming", "llm.is_streaming")
_ENVIRONMENT = ("deployment.environment.name", "deployment.environment")
_FINISH_REASONS = "gen_ai.response.finish_reasons"
_EVENTS = "llmtally.events"
_EVENT_LEVELS = 16  # of JSON inside `llmtally.events` (a list of objects)
_NUMBER_BOUND = 1e300  # beyond it (or NaN) an attribute is no rate-limit value
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


def _label(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` present and not empty, as text (see `limits.text`); None when none is."""
    for key in keys:
        found = attrs.get(key)
        if type(found) is str:
            if found:
                return found
        elif found is not None:
            return text(found, key)
    return None


def _text_at(attrs: Mapping[str, Any], key: str) -> str | None:
    """Attribute `key` as text (see `limits.text`); None when absent or empty."""
    found = attrs.get(key)
    if type(found) is str:
        return found or None
    return None if found is None else text(found, key)


def _http_status(found: Any) -> int | None:
    """An HTTP status code; None when absent or not one (it only describes the record)."""
    if type(found) is str and 0 < len(found) <= 3 and found.isascii() and found.isdigit():
        found = int(found)
    if isinstance(found, int) and not isinstance(found, bool) and 100 <= found <= 999:
        return int(found)
    return None


def _flag(found: Any) -> bool:
    """A boolean attribute (also `true`/`false` or 1/0); anything else is false."""
    if type(found) is bool:
        return found
    if type(found) is str:
        return found.strip().lower() in ("true", "1")
    return isinstance(found, (int, float)) and found == 1


def _service_tier(attrs: Mapping[str, Any]) -> str | None:
    served = _label(attrs, _SERVED_TIER)
    if served is not None:
        return served
    asked = _label(attrs, _ASKED_TIER)
    return None if asked == "auto" else asked


def is_llm_call(attrs: Mapping[str, Any]) -> bool:
    """Whether these attributes describe one LLM API request (not an agent, tool or workflow step). An operation
    that is no string counts as one: `to_record` rejects it with the reason."""
    if first(attrs, _MODEL) is None:
        return False
    operation = attrs.get("gen_ai.operation.name") or attrs.get("llm.request.type")
    return operation is None or type(operation) is not str or operation in LLM_OPERATIONS


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
    """The record these attributes describe, in llmtally's vocabulary whoever wrote them (see `peers`). Raises
    `limits.Invalid` for a value no record may hold (see `limits.check` for the rest)."""
    resource = resource or {}
    provider = _label(attrs, _PROVIDER) or "unknown"
    cached = _tokens(attrs, _CACHE_READ)
    cache_write_1h = _tokens(attrs, _CACHE_WRITE_1H)
    cache_write = max(_tokens(attrs, _CACHE_WRITE), cache_write_1h)  # a total is never below its part
    reasoning = _tokens(attrs, _REASONING)
    input_tokens, output_tokens = semconv_counts(
        source, provider, _tokens(attrs, _INPUT), _tokens(attrs, _OUTPUT), cached, cache_write, reasoning
    )
    operation = _label(attrs, _OPERATION) or "chat"
    peer_error = _text_at(attrs, "error.type")
    failed = peer_error is not None or span_failed
    error_type = mapped_error_type(peer_error) if peer_error is not None else (OTHER if failed else None)
    duration = seconds(attrs.get("llmtally.duration"), "llmtally.duration")
    ttft_key, ttft = _found(attrs, _TTFT)
    error_message = _text_at(attrs, "llmtally.error.message") or (status_message if failed else None)
    if error_message is None and peer_error != error_type:
        error_message = peer_error  # a peer's own error type, when nothing else says more
    return Record(
        record_id=record_id,
        start_time_ns=start_ns,
        end_time_ns=end_ns,
        trace_id=trace_id,
        span_id=span_id,
        provider=provider,
        operation=_OPERATIONS.get(operation, operation),
        request_model=_label(attrs, _MODEL) or "",
        response_model=_text_at(attrs, "gen_ai.response.model") or "",
        status=STATUS_ERROR if failed else STATUS_SUCCESS,
        http_status=_http_status(attrs.get("http.response.status_code")),
        error_type=error_type,
        error_message=error_message,
        duration_s=duration if duration is not None else max(end_ns - start_ns, 0) / 1e9,
        ttft_s=seconds(ttft, ttft_key),
        stream=_flag(first(attrs, _STREAM)),
        stream_outcome=_text_at(attrs, "llmtally.stream.outcome"),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=_tokens(attrs, _TOTAL) or input_tokens + output_tokens,
        cached_tokens=cached,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=cache_write_1h,
        reasoning_tokens=reasoning,
        input_audio_tokens=_tokens(attrs, _INPUT_AUDIO),
        output_audio_tokens=_tokens(attrs, _OUTPUT_AUDIO),
        web_searches=_tokens(attrs, _WEB_SEARCHES),
        units=_units(attrs),
        usage_source=_text_at(attrs, "llmtally.usage.source") or _usage_source(attrs),
        service_tier=_service_tier(attrs),
        speed=_text_at(attrs, "llmtally.speed"),
        user_id=_label(attrs, _USER),
        api_key=_text_at(attrs, "llmtally.api_key"),
        feature=_text_at(attrs, "llmtally.feature"),
        department=_text_at(attrs, "llmtally.department"),
        environment=_text_at(attrs, _ENVIRONMENT[0]) or _label(resource, _ENVIRONMENT),
        service=_text_at(resource, "service.name"),
        source_ip=_text_at(attrs, "client.address") or peer,
        response_id=_text_at(attrs, "gen_ai.response.id"),
        request_id=_text_at(attrs, "llmtally.provider.request_id"),
        finish_reasons=_finish_reasons(attrs.get(_FINISH_REASONS)),
        events=_events(attrs.get(_EVENTS)),
        ratelimits=_ratelimits(attrs),
        input_messages=_payload(attrs.get("gen_ai.input.messages"), "gen_ai.input.messages"),
        output_messages=_payload(attrs.get("gen_ai.output.messages"), "gen_ai.output.messages"),
        source=source,
        params=request_params(attrs),
        dimensions=dimensions(attrs),
    )


def _units(attrs: Mapping[str, Any]) -> dict[str, int | float]:
    """The known `llmtally.usage.unit.*` attributes by unit key (see `limits.unit`); {} when none (most records)."""
    if _UNIT_NAMES.isdisjoint(attrs):
        return {}
    return {key: unit(found, key) for name, key in _UNIT_ATTRIBUTES.items() if (found := attrs.get(name)) is not None}


def _usage_source(attrs: Mapping[str, Any]) -> str:
    """Where the token counts come from, for telemetry that does not say: the provider when any count is there."""
    return "provider" if any(k in attrs for k in (*_INPUT, *_OUTPUT)) else "none"


def _finish_reasons(found: Any) -> list[str]:
    """`gen_ai.response.finish_reasons`: an array of strings (a single string is one reason)."""
    if type(found) is str:
        return [found] if found else []
    if found is None:
        return []
    reasons = found if isinstance(found, (list, tuple)) else [found]  # a tuple: an SDK span's attributes
    return [reason for r in reasons if (reason := r if type(r) is str else text(r, _FINISH_REASONS))]


def _events(found: Any) -> list[dict[str, Any]]:
    """`llmtally.events`: a JSON list of objects (retries, fallbacks), other items left out; Invalid when it is not
    one (not JSON, not finite, too long or too deep to keep)."""
    if found is None or found == "":
        return []
    if type(found) is not str:
        raise Invalid(f"{_EVENTS}={shown(found)} is not a JSON string")
    if len(found) > MAX_LONG_TEXT:
        raise Invalid(f"{_EVENTS} is {len(found)} characters long, more than {MAX_LONG_TEXT}")
    try:
        parsed = json.loads(found, parse_constant=_not_finite, parse_float=_finite)
    except (ValueError, RecursionError) as error:
        raise Invalid(f"{_EVENTS} is not JSON ({shown(str(error))})") from None
    if not isinstance(parsed, list) or not _within(parsed, _EVENT_LEVELS):
        raise Invalid(f"{_EVENTS} is not a list of events (JSON objects at most {_EVENT_LEVELS} levels deep)")
    return [e for e in parsed if isinstance(e, dict)]


def _finite(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(f"{shown(number)} is not a finite number")
    return value


def _not_finite(constant: str) -> Any:
    raise ValueError(f"{constant} is not a number JSON allows")


def _within(node: Any, levels: int) -> bool:
    """Whether JSON `node` nests lists and objects at most `levels` deep."""
    if isinstance(node, dict):
        node = node.values()
    elif not isinstance(node, list):
        return True
    return levels > 0 and all(_within(child, levels - 1) for child in node)


_RATELIMIT_KEYS = tuple(
    (f"{kind}.{which}", f"{_RATELIMIT}{kind}.{which}")
    for kind in ("requests", "tokens", "input_tokens", "output_tokens")
    for which in ("limit", "remaining")
)


def _ratelimits(attrs: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, key in _RATELIMIT_KEYS:
        found = attrs.get(key)
        if isinstance(found, (int, float)) and not isinstance(found, bool) and -_NUMBER_BOUND < found < _NUMBER_BOUND:
            out[name] = float(found)
    return out


def _payload(found: Any, name: str) -> str | None:
    """A captured payload as text: a string as it is, structured values as JSON."""
    if found is None:
        return None
    if type(found) is str:
        return found
    try:
        return json.dumps(found, default=str)
    except (ValueError, RecursionError) as error:  # past Python's limits: an int of thousands of digits...
        raise Invalid(f"{name} cannot be kept as JSON ({shown(str(error))})") from None
