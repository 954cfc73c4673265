"""What a record may hold: values past these limits reject the record (OTLP partial success), with the reason.

The bounds keep every value inside what the store and the API can hold: 64-bit integer columns (and their sums in
the rollups), nano-USD costs (price x tokens), times the API can query (1970..2200), text the databases take.
"""

from __future__ import annotations

import logging
import math
import operator
import re
import reprlib
from typing import Any

from .record import Record
from .units import DURATIONS, UNIT_KEYS

MAX_TOKENS = 10**12  # per count of one request (a trillion tokens); total_tokens may be input + output
MAX_COST_NUSD = 10**18  # per request (a billion USD): far inside BIGINT (9.2e18), so rollup sums have headroom
LATEST_NS = 7_258_118_400 * 1_000_000_000  # 2200-01-01T00:00:00Z, the API's latest instant
MAX_SECONDS = 10**9  # durations and time to first token
MAX_TEXT = 4096  # characters of an identifier, name or label (ids, models, user, feature, ...)
MAX_LONG_TEXT = 16 * 1024 * 1024  # characters of an error message or a captured payload

_TOKENS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
)
_LONG_TEXT = ("error_message", "input_messages", "output_messages")
_TEXT = (
    "record_id",
    "trace_id",
    "span_id",
    "provider",
    "operation",
    "request_model",
    "response_model",
    "error_type",
    "stream_outcome",
    "usage_source",
    "service_tier",
    "speed",
    "user_id",
    "api_key",
    "feature",
    "department",
    "environment",
    "service",
    "source_ip",
    "response_id",
    "request_id",
    "source",
)

_texts = operator.attrgetter(*_TEXT)
_long_texts = operator.attrgetter(*_LONG_TEXT)


log = logging.getLogger("llmtally.normalise")
_DECIMAL = re.compile(r"\s*[-+]?[0-9]{1,20}\s*")  # ASCII digits only: "²" and "٣" are digits to str.isdigit
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = _SHOWN.maxlong = 60
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 2, 4, 4
_SHOWN_CHARACTERS = 100
_LOGGED: set[str] = set()  # kinds of unexpected errors logged already (each once)


class Invalid(ValueError):
    """A value no record may hold; the message says which and why (it becomes the rejection's reason)."""


def shown(found: Any) -> str:
    """A value as a rejection's reason shows it: its repr, cut short (a reason stays short whatever the value)."""
    try:
        text = _SHOWN.repr(found)
    except Exception:  # an int past the digits Python prints, an object whose repr fails
        return f"<{type(found).__name__}>"
    return text if len(text) <= _SHOWN_CHARACTERS else text[: _SHOWN_CHARACTERS - 3] + "..."


def reason(error: Exception) -> str:
    """Why a record is rejected: an `Invalid`'s message, else the unexpected error named. Such an error is a bug
    (logged once per kind): it rejects its record, never the request."""
    if isinstance(error, Invalid):
        return str(error)
    kind = type(error).__name__
    if kind not in _LOGGED and len(_LOGGED) < 100:
        _LOGGED.add(kind)
        log.error("a record was rejected for an unexpected %s", kind, exc_info=error)
    try:
        detail = shown(str(error))
    except Exception:
        detail = "?"
    return f"could not be read ({kind}: {detail})"


def text(found: Any, name: str) -> str | None:
    """A name, label, id or message attribute: a string (None when empty), a number or flag as its text; Invalid
    for an array, a key-value list or bytes."""
    if type(found) is str:
        return found or None
    if found is None:
        return None
    if isinstance(found, float) or (isinstance(found, int) and -(10**30) < found < 10**30):  # any 64-bit int
        return str(found)
    raise Invalid(f"{name}={shown(found)} is not a string")


def seconds(found: Any, name: str) -> float | None:
    """A duration attribute in seconds: None when absent or not a number; Invalid when not finite, negative or
    absurdly long."""
    if isinstance(found, bool) or not isinstance(found, (int, float)):
        return None
    value = float(found) if -MAX_SECONDS <= found <= MAX_SECONDS else math.inf  # no OverflowError for huge ints
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise Invalid(f"{name}={shown(found)} is not a duration in seconds between 0 and {MAX_SECONDS}")
    return value


def count(found: Any, name: str) -> int:
    """A token count attribute: a whole number, a float (truncated) or a decimal string of ASCII digits; 0 when
    absent or empty; Invalid for anything else (other text, a flag, an array, not finite). Sizes are checked by
    `check`."""
    if isinstance(found, int) and not isinstance(found, bool):
        return int(found)
    if found is None or found == "":
        return 0
    if isinstance(found, float) and math.isfinite(found):
        return int(found)
    if isinstance(found, str) and _DECIMAL.fullmatch(found):
        return int(found)
    raise Invalid(f"{name}={shown(found)} is not a token count")


def unit(found: Any, key: str) -> int | float:
    """A `llmtally.usage.unit.<key>` attribute's value: a whole count, or seconds (a float) for a duration unit;
    Invalid for anything else (text, a bool, a fraction of a count, not finite). Bounds are checked by `check`."""
    if type(found) is int:
        return found
    if type(found) is float and math.isfinite(found):
        if key in DURATIONS:
            return found
        if found.is_integer():
            return int(found)
    what = "duration in seconds" if key in DURATIONS else "whole count"
    raise Invalid(f"units.{key}={shown(found)} is not a {what}")


def check(record: Record) -> None:
    """Raises Invalid when a value of `record` is outside what it may hold."""
    if not 0 < record.start_time_ns < LATEST_NS or not 0 < record.end_time_ns < LATEST_NS:
        raise Invalid(
            f"times must be between 1970-01-01 and 2200-01-01 (start {record.start_time_ns} ns, "
            f"end {record.end_time_ns} ns since the epoch)"
        )
    if record.end_time_ns < record.start_time_ns:
        raise Invalid(f"ends before it starts ({record.end_time_ns} < {record.start_time_ns} ns)")
    for name in _TOKENS:
        _bounded(name, getattr(record, name), MAX_TOKENS)
    _bounded("total_tokens", record.total_tokens, 2 * MAX_TOKENS)
    _bounded("web_searches", record.web_searches, MAX_TOKENS, "count")
    if record.units:
        _check_units(record.units)
    for name, value in (("duration_s", record.duration_s), ("ttft_s", record.ttft_s)):
        if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
            raise Invalid(f"{name}={value!r} is not a duration in seconds between 0 and {MAX_SECONDS}")
    for name, value in zip(_TEXT, _texts(record), strict=True):
        if value is not None and len(value) > MAX_TEXT:
            _short(name, value, MAX_TEXT)
    for name, value in zip(_LONG_TEXT, _long_texts(record), strict=True):
        if value is not None and len(value) > MAX_LONG_TEXT:
            _short(name, value, MAX_LONG_TEXT)
    for reason in record.finish_reasons:
        _short("finish_reasons", reason, MAX_TEXT)


def check_costs(record: Record) -> None:
    """Raises Invalid when the priced costs of `record` do not fit (a huge configured price x many tokens)."""
    for name in ("provider_cost_nusd", "customer_cost_nusd"):
        value = getattr(record, name)
        if value is not None and not -MAX_COST_NUSD <= value <= MAX_COST_NUSD:
            raise Invalid(f"{name}={shown(value)} is beyond {MAX_COST_NUSD} nano-USD (price x tokens)")


def _check_units(units: dict[str, int | float]) -> None:
    """Known keys only (so at most `len(UNIT_KEYS)` of them), each value a count or a duration within bounds."""
    for key, value in units.items():
        if key not in UNIT_KEYS:
            raise Invalid(f"units.{key} is not a unit a record keeps (a genai-prices usage key or images)")
        unit(value, key)
        most = MAX_SECONDS if key in DURATIONS else MAX_TOKENS
        if not 0 <= value <= most:
            raise Invalid(f"units.{key}={shown(value)} is not between 0 and {most}")


def _bounded(name: str, value: int, most: int, what: str = "token count") -> None:
    if not 0 <= value <= most:
        raise Invalid(f"{name}={shown(value)} is not a {what} between 0 and {most}")


def _short(name: str, value: str | None, most: int) -> None:
    if value is not None and len(value) > most:
        raise Invalid(f"{name} is {len(value)} characters long, more than {most}")
