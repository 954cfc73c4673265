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
    """An OTLP attribute list as a dict (the hot path of normalisation: one oneof look-up per value)."""
    out: dict[str, Any] = {}
    for kv in key_values:
        v = kv.value
        kind = v.WhichOneof("value")
        if kind is None:
            continue
        found = getattr(v, kind)
        if kind == "string_value":
            if "\x00" in found:  # PostgreSQL text cannot hold NUL: keep the rest of the value
                found = found.replace("\x00", "\ufffd")
            out[kv.key] = found
        else:
            out[kv.key] = found if kind not in _NESTED else value(v)
    return out


_NESTED = frozenset({"array_value", "kvlist_value"})
