"""`Record` <-> table row: one column per field, lists and dicts as JSON text."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from ..normalise.record import Record

JSON_FIELDS = ("finish_reasons", "events", "ratelimits", "units", "seen_by", "params", "dimensions")
BOOL_FIELDS = ("stream", "priced")
SCALAR_FIELDS = tuple(f.name for f in dataclasses.fields(Record) if f.name not in JSON_FIELDS)
# The order of the values in a row, and of the columns the store inserts and selects. A new Record field needs a
# migration that adds its column (the round-trip test fails until then).
COLUMNS: tuple[str, ...] = SCALAR_FIELDS + JSON_FIELDS
COLUMN_LIST = ", ".join(COLUMNS)

_scalars = attrgetter(*SCALAR_FIELDS)
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_finish_reasons_json: dict[tuple[str, ...], str] = {}  # the few distinct lists seen ("stop", "length", ...)
_BOOL_INDEXES = tuple(COLUMNS.index(name) for name in BOOL_FIELDS)
_JSON_INDEXES = tuple(COLUMNS.index(name) for name in JSON_FIELDS)


def to_json(value: Any) -> str:
    """A list or dict as the compact JSON text the store keeps."""
    return _compact(value)


def record_to_row(r: Record) -> tuple[Any, ...]:
    """The row to insert for `r` (values in `COLUMNS` order)."""
    row: tuple[Any, ...] = _scalars(r)
    return (
        *row,
        _finish_reasons(r.finish_reasons),
        _compact(r.events) if r.events else "[]",
        _compact(r.ratelimits) if r.ratelimits else "{}",
        _compact(r.units) if r.units else "{}",
        _compact(r.seen_by) if r.seen_by else "[]",
        _compact(r.params) if r.params else "{}",
        _compact(r.dimensions) if r.dimensions else "{}",
    )


def _finish_reasons(reasons: list[str]) -> str:
    if not reasons:
        return "[]"
    key = tuple(reasons)
    text = _finish_reasons_json.get(key)
    if text is None:
        text = _compact(reasons)
        if len(_finish_reasons_json) < 256:
            _finish_reasons_json[key] = text
    return text


def row_to_record(row: Sequence[Any]) -> Record:
    """The `Record` a selected row (in `COLUMNS` order) holds."""
    values = list(row)
    for i in _BOOL_INDEXES:
        values[i] = bool(values[i])
    for i in _JSON_INDEXES:
        values[i] = json.loads(values[i])
    return Record(**dict(zip(COLUMNS, values, strict=True)))
