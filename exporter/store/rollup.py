"""Rollups: per-key sums of the stored records by hour and by day, in families of narrower and wider keys.

Every family has an hourly and a daily table with the same key (a bucket start, then the family's dimensions) and
the same sums. The full family's key is every dimension (`DIMENSIONS`); the narrow ones keep a few (`MODEL`: what
the errors, health and cost-by-model reports group by; `USER`: attribution), so a 30-day report that needs only
those reads a few thousand rows instead of every full key's. Writes add to every table in the same transaction;
reprice and retention recompute or delete every table's rows of a day. `usage.py` picks the family for a query.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import add, itemgetter
from typing import Any

from ..normalise.record import STATUS_ERROR, Record

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
RECORDS = "completion_records"
BIGINT_MAX = 2**63 - 1

# Dimensions of the full rollup key (after the bucket); a missing one is stored as ''.
DIMENSIONS = (
    "provider",
    "operation",
    "request_model",
    "response_model",
    "status",
    "error_type",
    "user_id",
    "api_key",
    "feature",
    "department",
    "environment",
    "service_tier",
)
MODEL_DIMENSIONS = (
    "provider",
    "operation",
    "request_model",
    "response_model",
    "status",
    "error_type",
    "environment",
    "service_tier",
)
USER_DIMENSIONS = ("user_id", "api_key", "feature", "department", "environment")


@dataclass(frozen=True)
class Rollup:
    table: str
    bucket: str  # the key's first column: the bucket's start, ns since the epoch (UTC)
    width_ns: int
    dimensions: tuple[str, ...] = DIMENSIONS  # the rest of the key
    # What reprice recomputes this table from: None for the records, else a finer rollup of the same family or of
    # the full one (already recomputed: ROLLUPS lists it earlier).
    source: Rollup | None = None
    # Where this key's dimensions are in a row of `source` (for rows derived from the source's rows).
    _picks: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        source_key = (self.bucket, *DIMENSIONS) if self.source is None else self.source.key
        object.__setattr__(self, "_picks", tuple(source_key.index(d) for d in self.dimensions))

    @property
    def key(self) -> tuple[str, ...]:
        return (self.bucket, *self.dimensions)


@dataclass(frozen=True)
class Family:
    """An hourly and a daily rollup keyed by the same dimensions."""

    name: str
    hourly: Rollup
    daily: Rollup

    @property
    def dimensions(self) -> tuple[str, ...]:
        return self.hourly.dimensions


HOURLY = Rollup("completion_rollup_hourly", "hour_start_ns", HOUR_NS)
DAILY = Rollup("completion_rollup_daily", "day_start_ns", DAY_NS, source=HOURLY)
FULL = Family("full", HOURLY, DAILY)


def _narrow(name: str, dimensions: tuple[str, ...]) -> Family:
    hourly = Rollup(f"completion_rollup_{name}_hourly", "hour_start_ns", HOUR_NS, dimensions, HOURLY)
    return Family(name, hourly, Rollup(f"completion_rollup_{name}_daily", "day_start_ns", DAY_NS, dimensions, hourly))


MODEL = _narrow("model", MODEL_DIMENSIONS)
USER = _narrow("user", USER_DIMENSIONS)
# Narrowest first: a query reads the first family whose dimensions cover its groups and filters.
FAMILIES = (MODEL, USER, FULL)
# Every table, each after the one it is recomputed from.
ROLLUPS = (HOURLY, DAILY, *(r for f in FAMILIES if f is not FULL for r in (f.hourly, f.daily)))

KEY = (HOURLY.bucket, *DIMENSIONS)
TOKENS = ("input_tokens", "output_tokens", "total_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")
INT_SUMS = (
    "requests",
    "errors",
    *TOKENS,
    "provider_cost_nusd",
    "customer_cost_nusd",
    "unpriced_requests",
)
FLOAT_SUMS = ("duration_s_sum", "ttft_s_sum")
SUMS = (*INT_SUMS, *FLOAT_SUMS, "ttft_count")
# The same sums computed from completion_records rows (for the minutes outside whole hours).
RAW_SUMS = {
    "requests": "COUNT(*)",
    "errors": f"SUM(CASE WHEN status = '{STATUS_ERROR}' THEN 1 ELSE 0 END)",
    **{c: f"SUM({c})" for c in TOKENS},
    "provider_cost_nusd": "SUM(COALESCE(provider_cost_nusd, 0))",
    "customer_cost_nusd": "SUM(COALESCE(customer_cost_nusd, 0))",
    "unpriced_requests": "SUM(CASE WHEN priced THEN 0 ELSE 1 END)",
    "duration_s_sum": "SUM(duration_s)",
    "ttft_s_sum": "SUM(COALESCE(ttft_s, 0.0))",
    "ttft_count": "COUNT(ttft_s)",
}
NULLABLE = {"error_type", "user_id", "api_key", "feature", "department", "environment", "service_tier"}

UsageRow = dict[str, str | int | float]


def aggregate(records: Iterable[Record]) -> list[tuple[Any, ...]]:
    """One full hourly row per rollup key (key columns then `SUMS`), sorted by key so concurrent writers lock in
    one order."""
    acc: dict[tuple[Any, ...], list[Any]] = {}
    for r in records:
        t = r.start_time_ns
        key = (
            t - t % HOUR_NS,
            r.provider,
            r.operation,
            r.request_model,
            r.response_model,
            r.status,
            r.error_type or "",
            r.user_id or "",
            r.api_key or "",
            r.feature or "",
            r.department or "",
            r.environment or "",
            r.service_tier or "",
        )
        s = acc.get(key)
        if s is None:
            s = acc[key] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0]
        s[0] += 1
        if r.status == STATUS_ERROR:
            s[1] += 1
        s[2] += r.input_tokens
        s[3] += r.output_tokens
        s[4] += r.total_tokens
        s[5] += r.cached_tokens
        s[6] += r.cache_write_tokens
        s[7] += r.reasoning_tokens
        if r.provider_cost_nusd is not None:
            s[8] += r.provider_cost_nusd
        if r.customer_cost_nusd is not None:
            s[9] += r.customer_cost_nusd
        if not r.priced:
            s[10] += 1
        s[11] += r.duration_s
        if r.ttft_s is not None:
            s[12] += r.ttft_s
            s[13] += 1
    return [(*key, *acc[key]) for key in sorted(acc)]


def _derive(rollup: Rollup, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows of `rollup.source` summed into `rollup`'s buckets and key, sorted by key."""
    assert rollup.source is not None
    pick, width, n = itemgetter(*rollup._picks), rollup.width_ns, len(rollup.source.key)
    acc: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        key = (row[0] - row[0] % width, *pick(row))
        sums = acc.get(key)
        acc[key] = row[n:] if sums is None else tuple(map(add, sums, row[n:]))
    return [(*key, *acc[key]) for key in sorted(acc)]


def write_rows(hourly: Sequence[tuple[Any, ...]]) -> list[tuple[Rollup, list[tuple[Any, ...]]]]:
    """Every rollup table's rows for the full hourly `aggregate()` rows, in `ROLLUPS` order, each summed from its
    source's (fewer) rows."""
    done: dict[str, list[tuple[Any, ...]]] = {HOURLY.table: list(hourly)}
    for r in ROLLUPS[1:]:
        assert r.source is not None
        done[r.table] = _derive(r, done[r.source.table])
    return [(r, done[r.table]) for r in ROLLUPS]


def rows_for(rollup: Rollup, hourly: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One rollup table's rows for the full hourly `aggregate()` rows."""
    return dict((r.table, rows) for r, rows in write_rows(hourly))[rollup.table]


def upsert_sql(rollup: Rollup, placeholder: str, source: str | None = None, *, checked: bool = False) -> str:
    """The statement that adds rollup rows to the stored sums (both dialects): one row of values, or every row of
    the `source` table when given. `checked`: an integer sum that would pass BIGINT's range becomes NULL (refused by
    NOT NULL) instead of what SQLite makes of it, a float."""
    columns = ", ".join((*rollup.key, *SUMS))
    key = ", ".join(rollup.key)
    values = ", ".join([placeholder] * (len(rollup.key) + len(SUMS)))
    rows = f"SELECT {columns} FROM {source} ORDER BY {key}" if source else f"VALUES ({values})"
    updates = ", ".join(f"{c} = {_add(rollup.table, c, checked and c not in FLOAT_SUMS)}" for c in SUMS)
    return f"INSERT INTO {rollup.table} ({columns}) {rows} ON CONFLICT ({key}) DO UPDATE SET {updates}"


def _add(table: str, column: str, checked: bool) -> str:
    total = f"{table}.{column} + excluded.{column}"
    if not checked:
        return total
    overflows = f"excluded.{column} > 0 AND {table}.{column} > {BIGINT_MAX} - excluded.{column}"
    return f"CASE WHEN {overflows} THEN NULL ELSE {total} END"


def bucket_start_sql(column: str, width_ns: int) -> str:
    """SQL for the start of the `width_ns` bucket holding `column` (both dialects). Integer division, not `%`: with
    psycopg's `%s` parameters a bare `%` in the statement is an incomplete placeholder."""
    return f"{column} / {width_ns} * {width_ns}"


def derived_sql(rollup: Rollup, table: str) -> str:
    """A SELECT of `rollup`'s rows summed from full hourly rows in `table` (same columns as `HOURLY`'s table)."""
    bucket = bucket_start_sql(HOURLY.bucket, rollup.width_ns)
    sums = ", ".join(f"SUM({c}) AS {c}" for c in SUMS)
    ordinals = ", ".join(str(i + 1) for i in range(len(rollup.key)))
    dims = ", ".join(rollup.dimensions)
    return f"SELECT {bucket} AS {rollup.bucket}, {dims}, {sums} FROM {table} GROUP BY {ordinals}"


def rebuild_sql(rollup: Rollup, placeholder: str) -> tuple[str, str]:
    """Statements that recompute one rollup over [start, end) (bucket-aligned), from the records or from its source
    rollup (recomputed before it): delete, insert. Both take (start, end)."""
    p = placeholder
    delete = f"DELETE FROM {rollup.table} WHERE {rollup.bucket} >= {p} AND {rollup.bucket} < {p}"
    target = f"INSERT INTO {rollup.table} ({', '.join((*rollup.key, *SUMS))}) "
    ordinals = ", ".join(str(i + 1) for i in range(len(rollup.key)))
    source = rollup.source
    if source is None:
        dims = [f"COALESCE({d}, '')" if d in NULLABLE else d for d in rollup.dimensions]
        bucket = bucket_start_sql("start_time_ns", rollup.width_ns)
        sums = [RAW_SUMS[c] for c in SUMS]
        where, table = f"start_time_ns >= {p} AND start_time_ns < {p}", RECORDS
    else:
        dims = list(rollup.dimensions)
        bucket = bucket_start_sql(source.bucket, rollup.width_ns)
        sums = [f"SUM({c})" for c in SUMS]
        where, table = f"{source.bucket} >= {p} AND {source.bucket} < {p}", source.table
    insert = (
        f"{target}SELECT {bucket}, {', '.join(dims)}, {', '.join(sums)} FROM {table} WHERE {where} GROUP BY {ordinals}"
    )
    return delete, insert


def changes(added: Iterable[Record], removed: Iterable[Record]) -> list[tuple[Any, ...]]:
    """Full hourly rows (as `aggregate`'s) that add the `added` records and take the `removed` ones away (a record
    replaced by a richer one, calls found to be one), sorted by key; keys whose changes cancel out are left out."""
    rows = aggregate(added)
    taken = aggregate(removed)
    if not taken:
        return rows
    n = len(KEY)
    acc: dict[tuple[Any, ...], list[Any]] = {row[:n]: list(row[n:]) for row in rows}
    for row in taken:
        sums = acc.setdefault(row[:n], [0] * len(INT_SUMS) + [0.0] * len(FLOAT_SUMS) + [0])
        for i, value in enumerate(row[n:]):
            sums[i] -= value
    return [(*key, *sums) for key, sums in sorted(acc.items()) if any(sums)]


def emptied_sql(rollup: Rollup, placeholder: str) -> str:
    """The statement that deletes the rows of `rollup` left with no request in [start, end) (after records were
    taken away: their other sums are zero too, but for the rounding of float sums). Takes (start, end)."""
    p = placeholder
    return f"DELETE FROM {rollup.table} WHERE {rollup.bucket} >= {p} AND {rollup.bucket} < {p} AND requests = 0"


def emptied_range(removed: Sequence[Record]) -> tuple[int, int]:
    """The whole UTC days holding the start of every removed record: where rows may have been emptied."""
    starts = [r.start_time_ns for r in removed]
    return min(starts) // DAY_NS * DAY_NS, (max(starts) // DAY_NS + 1) * DAY_NS
