"""The store's side of one record per call (`calls`): the stored records a batch may join, and the rows a plan
changes.

`completion_layers` maps the id of every layer the store did not keep (a peer's span beside llmtally's record, a
record replaced by a richer one) to the id of the record kept for its call, so that the layer, sent again or
followed by its child span, finds the call. Both SQL dialects; the statements run inside the writer's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..normalise.record import Record
from .calls import TIME_WINDOW_NS, Plan
from .columns import COLUMN_LIST, COLUMNS, record_to_row, row_to_record
from .rollup import RECORDS

if TYPE_CHECKING:
    from .sql import Transaction

LAYERS = "completion_layers"
_CHUNK = 500  # values per IN list (well under SQLite's bound-parameter limit)
_RANGES = 50  # time ranges per query


def _among(p: str, column: str, values: Iterable[str]) -> Iterator[tuple[str, list[Any]]]:
    """(condition, parameters) pairs that together match `column` against every value: one `= ANY(array)` with
    PostgreSQL's driver (placeholder `%s`: it binds a list as an array), IN lists of `_CHUNK` values with SQLite's."""
    unique = sorted(set(values))
    if not unique:
        return
    if p == "%s":
        yield f"{column} = ANY({p})", [unique]
        return
    for i in range(0, len(unique), _CHUNK):
        chunk = unique[i : i + _CHUNK]
        yield f"{column} IN ({', '.join([p] * len(chunk))})", chunk


def _select(tx: Transaction, p: str, column: str, values: Iterable[str], suffix: str = "") -> list[Record]:
    found: list[Record] = []
    for condition, params in _among(p, column, values):
        found += map(row_to_record, tx.rows(f"SELECT {COLUMN_LIST} FROM {RECORDS} WHERE {condition}{suffix}", params))
    return found


def load(tx: Transaction, p: str, batch: Sequence[Record]) -> tuple[list[Record], dict[str, str]]:
    """The stored records `batch` may be layers of: by id (the batch's ids and parent spans, also as layers of a
    stored call), by response id, and, for records without a response id, by service, model and start time. Returns
    them (each once) and the stored layers found (layer id -> id of the record kept for its call). A query or a few
    per kind of evidence, for the whole batch."""
    ids = {r.record_id for r in batch} | {r.parent_span_id for r in batch if r.parent_span_id}
    records = {r.record_id: r for r in _select(tx, p, "record_id", ids)}
    layers: dict[str, str] = {}
    for condition, params in _among(p, "record_id", ids):
        layers.update(tx.rows(f"SELECT record_id, call_id FROM {LAYERS} WHERE {condition}", params))
    for r in _select(tx, p, "record_id", set(layers.values()) - records.keys()):
        records[r.record_id] = r
    responses = {r.response_id for r in batch if r.response_id}
    for r in _select(tx, p, "response_id", responses):
        records.setdefault(r.record_id, r)
    for r in _unanswered(tx, p, [r for r in batch if not r.response_id]):
        records.setdefault(r.record_id, r)
    return list(records.values()), layers


def _unanswered(tx: Transaction, p: str, batch: Sequence[Record]) -> list[Record]:
    """Stored records without a response id, of the batch's models, starting within the time window of one of the
    batch's records without one (the window's neighbours merged into ranges)."""
    ranges: list[tuple[str, int, int]] = []
    by_model: dict[str, list[int]] = {}
    for r in batch:
        by_model.setdefault(r.request_model, []).append(r.start_time_ns)
    for model, starts in by_model.items():
        starts.sort()
        low = high = starts[0]
        for start in starts[1:]:
            if start - high > 2 * TIME_WINDOW_NS:
                ranges.append((model, low - TIME_WINDOW_NS, high + TIME_WINDOW_NS))
                low = start
            high = start
        ranges.append((model, low - TIME_WINDOW_NS, high + TIME_WINDOW_NS))
    found: list[Record] = []
    for i in range(0, len(ranges), _RANGES):
        chunk = ranges[i : i + _RANGES]
        where = " OR ".join([f"(request_model = {p} AND start_time_ns >= {p} AND start_time_ns <= {p})"] * len(chunk))
        sql = f"SELECT {COLUMN_LIST} FROM {RECORDS} WHERE response_id IS NULL AND ({where})"
        found += map(row_to_record, tx.rows(sql, [v for item in chunk for v in item]))
    return found


def current(tx: Transaction, p: str, records: Sequence[Record]) -> list[Record]:
    """`records` as stored now, their rows locked until the transaction ends (PostgreSQL's `FOR UPDATE`): a writer
    that changed one meanwhile has committed, and whatever was read before it is to be read again."""
    return _select(tx, p, "record_id", (r.record_id for r in records), " ORDER BY record_id FOR UPDATE")


def apply(tx: Transaction, p: str, plan: Plan) -> None:
    """The plan's changes to stored rows and layers (the new records and the rollups are the caller's)."""
    if plan.deletes:
        tx.many(f"DELETE FROM {RECORDS} WHERE record_id = {p}", [(i,) for i in plan.deletes])
    if plan.updates:
        sets = ", ".join(f"{c} = {p}" for c in COLUMNS)
        rows: list[tuple[Any, ...]] = [(*record_to_row(r), row_id) for row_id, r in plan.updates]
        tx.many(f"UPDATE {RECORDS} SET {sets} WHERE record_id = {p}", rows)
    if plan.repoint:
        tx.many(f"UPDATE {LAYERS} SET call_id = {p} WHERE call_id = {p}", [(new, old) for old, new in plan.repoint])
    if plan.layers:
        tx.many(
            f"INSERT INTO {LAYERS} (record_id, call_id, source, start_time_ns) VALUES ({p}, {p}, {p}, {p}) "
            "ON CONFLICT (record_id) DO UPDATE SET call_id = excluded.call_id",
            plan.layers,
        )


def delete_between(tx: Transaction, p: str, start_ns: int, end_ns: int) -> None:
    """Forgets the layers starting in [start_ns, end_ns) (with their calls' records, by retention)."""
    tx.run(f"DELETE FROM {LAYERS} WHERE start_time_ns >= {p} AND start_time_ns < {p}", (start_ns, end_ns))
