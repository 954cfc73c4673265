"""OTLP `KeyValue` lists -> plain Python dicts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def value(any_value: Any) -> Any:
    """The plain value of an OTLP `AnyValue` (arrays and key-value lists recursively)."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    return getattr(any_value, kind)


def attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    """An OTLP attribute list as a dict (the hot path of normalisation: one read per string value, a oneof look-up
    for the others)."""
    out: dict[str, Any] = {}
    for kv in key_values:
        v = kv.value
        text = v.string_value  # most values are strings: one read instead of the oneof look-up and a read
        if text:  # PostgreSQL text cannot hold NUL: keep the rest of the value
            out[kv.key] = text.replace("\x00", "\ufffd") if "\x00" in text else text
            continue
        kind = v.WhichOneof("value")
        if kind is None:
            continue
        out[kv.key] = getattr(v, kind) if kind not in _NESTED else value(v)  # an empty string is read here
    return out


_NESTED = frozenset({"array_value", "kvlist_value"})
