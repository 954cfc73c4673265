"""Exports of request records as CSV, JSON or JSONL: streamed page by page (constant memory at any size), and safe
to open in a spreadsheet (text that could start a formula is prefixed with an apostrophe, as OWASP advises)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, get_args

from ..normalise.record import Record
from .reports import request_detail

Format = Literal["csv", "json", "jsonl"]
FORMATS: tuple[str, ...] = get_args(Format)
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json", "jsonl": "application/x-ndjson"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_FLUSH_BYTES = 64 * 1024


def columns(payloads: bool, dimensions: Sequence[str] = ()) -> list[str]:
    """The exported fields, in order: the request detail's (payloads only when asked for), then one per declared
    custom dimension instead of the detail's `dimensions` object."""
    names = [n for n in request_detail(Record("", 0, 0)) if n != "dimensions"]
    if not payloads:
        names = [n for n in names if n not in ("input_messages", "output_messages")]
    return [*names, *dimensions]


def safe_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text, never evaluates: lists and dicts as JSON, and text starting with
    = + - @ or a control character prefixed with an apostrophe."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _rows(records: Iterable[Record], names: list[str]) -> Iterator[dict[str, Any]]:
    for r in records:
        detail = request_detail(r)
        yield {n: detail[n] if n in detail else r.dimensions.get(n) for n in names}


def stream(
    records: Iterable[Record], fmt: str, payloads: bool = False, dimensions: Sequence[str] = ()
) -> Iterator[str]:
    """The export as text chunks of about 64 KiB; a column per declared custom dimension."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    names = columns(payloads, dimensions)
    buffer = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(names)
    elif fmt == "json":
        buffer.write("[")
    first = True
    for row in _rows(records, names):
        if fmt == "csv":
            writer.writerow([safe_cell(row[n]) for n in names])
        else:
            if fmt == "json" and not first:
                buffer.write(",")
            buffer.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False))
            if fmt == "jsonl":
                buffer.write("\n")
        first = False
        if buffer.tell() >= _FLUSH_BYTES:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if fmt == "json":
        buffer.write("]\n")
    yield buffer.getvalue()
