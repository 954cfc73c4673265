"""OTLP `KeyValue` lists -> plain Python dicts. Never raises: what cannot be read is marked `Unreadable`, and the
record that reads it is rejected with the reason (`limits.text`, `limits.count`...)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_DEPTH = 64  # arrays and key-value lists inside one another (protobuf itself stops at about 48)


class Unreadable:
    """Stands for a value nested deeper than `MAX_DEPTH`; it shows as its reason in a captured payload."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<nested deeper than {MAX_DEPTH} levels>"

    __str__ = __repr__


UNREADABLE = Unreadable()


def value(any_value: Any, depth: int = 0) -> Any:
    """The plain value of an OTLP `AnyValue` (arrays and key-value lists recursively, strings without NUL)."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return _text(any_value.string_value)
    if kind not in _NESTED:
        return getattr(any_value, kind)
    if depth >= MAX_DEPTH:
        return UNREADABLE
    if kind == "array_value":
        return [value(v, depth + 1) for v in any_value.array_value.values]
    return {_text(kv.key): value(kv.value, depth + 1) for kv in any_value.kvlist_value.values}


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


def _text(text: str) -> str:
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


_NESTED = frozenset({"array_value", "kvlist_value"})
