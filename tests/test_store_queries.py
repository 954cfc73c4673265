"""The store's queries and maintenance on SQLite and on a real PostgreSQL server: usage() for any time range, the
daily rollup and its migration, keyset pages over a snapshot, and deleting, dropping payloads and repricing ranges.

Every expectation is computed here, straight from the records written."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytest

from llmtally.exporter.normalise.record import Record
from llmtally.exporter.store import open_store, postgres, rollup, schema
from llmtally.exporter.store.columns import COLUMNS, record_to_row
from llmtally.exporter.store.rollup import DIMENSIONS
from llmtally.exporter.store.select import FILTER_COLUMNS, BadCursor, Cursor, Selection
from llmtally.exporter.store.sql import SQLStore
from test_store import DAY, FLOAT_SUMS, HOUR, INT_SUMS, T0, expected_usage, make

MINUTE = 60_000_000_000
D1 = T0 + DAY  # the second day of the data
Sums = dict[str, Any]
MAX_PAGES = 5000  # a walk that goes on longer has a cursor that does not advance


# --- fixtures ----------------------------------------------------------------------------------------------------


# --- expectations computed from the records ----------------------------------------------------------------------


def zero() -> Sums:
    return dict.fromkeys(INT_SUMS, 0) | dict.fromkeys(FLOAT_SUMS, 0.0)


def matching(records: Iterable[Record], start: int, end: int, filters: Mapping[str, str] | None = None) -> list[Record]:
    """The records starting in [start, end) whose dimensions equal `filters` (a missing value counts as '')."""
    return [
        r
        for r in records
        if start <= r.start_time_ns < end and all((getattr(r, k) or "") == v for k, v in (filters or {}).items())
    ]


def sums_by(records: Iterable[Record], group_by: Sequence[str]) -> dict[tuple[Any, ...], Sums]:
    """What usage() should answer for exactly these records: sums per group (one row of totals without groups)."""
    out = expected_usage(list(records), group_by)
    if not group_by and not out:
        out[()] = zero()
    return out


def assert_same_sums(got: Mapping[tuple[Any, ...], Sums], want: Mapping[tuple[Any, ...], Sums], context: Any) -> None:
    assert set(got) == set(want), context
    for key, sums in want.items():
        assert {n: got[key][n] for n in INT_SUMS} == {n: sums[n] for n in INT_SUMS}, (context, key)
        assert {n: got[key][n] for n in FLOAT_SUMS} == pytest.approx({n: sums[n] for n in FLOAT_SUMS}), (context, key)


def assert_usage(
    store: SQLStore,
    records: Sequence[Record],
    group_by: Sequence[str],
    start: int,
    end: int,
    filters: Mapping[str, str] | None = None,
) -> None:
    """usage() equals the sums of the records starting in [start, end) that match `filters`."""
    rows = store.usage(group_by, start, end, filters)
    got = {tuple(row[g] for g in group_by): row for row in rows}
    assert len(got) == len(rows), "a group appears twice"
    context = (list(group_by), start - T0, end - T0, filters)
    assert_same_sums(got, sums_by(matching(records, start, end, filters), group_by), context)


def rollup_rows(store: SQLStore, table: rollup.Rollup, start: int, end: int) -> dict[tuple[Any, ...], Sums]:
    """The stored rows of one rollup table with buckets in [start, end), by its key (bucket, *dimensions)."""
    p = store.placeholder
    columns = ", ".join((*table.key, *INT_SUMS, *FLOAT_SUMS))
    sql = f"SELECT {columns} FROM {table.table} WHERE {table.bucket} >= {p} AND {table.bucket} < {p}"
    n = len(table.key)
    return {
        tuple(row[:n]): dict(zip((*INT_SUMS, *FLOAT_SUMS), row[n:], strict=True))
        for row in store._query(sql, (start, end))
    }


def assert_rollups(store: SQLStore, records: Sequence[Record], start: int, end: int) -> None:
    """Every rollup table (each family's hourly and daily) holds, for the buckets in [start, end) (day-aligned),
    exactly the records' sums by its key."""
    for table in rollup.ROLLUPS:
        bucket = "hour" if table.width_ns == HOUR else "day"
        want = sums_by(matching(records, start, end), [bucket, *table.dimensions])
        assert_same_sums(rollup_rows(store, table, start, end), want, table.table)


def page_order(records: Iterable[Record], newest_first: bool) -> list[str]:
    ordered = sorted(records, key=lambda r: (r.start_time_ns, r.record_id), reverse=newest_first)
    return [r.record_id for r in ordered]


def walk(
    store: SQLStore,
    selection: Selection,
    limit: int,
    newest_first: bool = True,
    between_pages: Callable[[Cursor], None] | None = None,
) -> list[Record]:
    """Every page of `selection`, following the cursors (passed through their text form, as the API does); checks
    that each page but the last is full and that the last has no cursor (no empty page after a full one)."""
    found: list[Record] = []
    cursor: Cursor | None = None
    for _ in range(MAX_PAGES):
        records, following = store.page(selection, limit, cursor, newest_first=newest_first)
        found += records
        if following is None:
            assert len(records) <= limit
            assert records or not found, "an empty page after a full one"
            return found
        assert len(records) == limit
        if between_pages is not None:
            between_pages(following)
        cursor = Cursor.decode(following.encode())
    raise AssertionError(f"no last page after {MAX_PAGES} pages")


def spread(n: int, first: int, start: int, width: int, seed: int) -> list[Record]:
    """n records numbered from `first`, starting at random times in [start, start + width)."""
    rnd = random.Random(seed)
    return [make(first + i, start_ns=start + rnd.randrange(width)) for i in range(n)]


# --- usage() for any range ---------------------------------------------------------------------------------------

USAGE_RANGES = [
    (D1 + 10 * MINUTE + 123, D1 + 50 * MINUTE + 7),  # inside one hour
    (D1 + 3 * HOUR + 17 * MINUTE + 1, D1 + 9 * HOUR + 45 * MINUTE),  # whole hours between unaligned ends
    (D1 + 1, D1 + DAY - 1),  # a nanosecond short of a whole day at each end
    (D1 + 20 * HOUR + 30 * MINUTE, D1 + DAY + 4 * HOUR + 10 * MINUTE),  # across midnight, no whole day
    (T0 + 7 * HOUR + 13 * MINUTE + 5, T0 + 4 * DAY + 5 * HOUR + 59 * MINUTE),  # minutes, hours and whole days
    (T0 + 5 * HOUR, T0 + 3 * DAY + 2 * HOUR),  # hour-aligned, whole days between
    (D1, D1 + 2 * DAY),  # whole days only
    (T0 - 3 * MINUTE, T0 + 5 * DAY + 3 * MINUTE),  # everything and a little more
    (D1 + 30 * MINUTE, D1 + 30 * MINUTE + 1),  # one nanosecond
]
USAGE_GROUPS = [[], ["request_model"], ["user_id", "day"], ["hour"], ["day"], ["provider", "status"]]
USAGE_FILTERS = [{"user_id": "user1"}, {"provider": "openai", "status": "error"}, {"feature": ""}]


def usage_records() -> list[Record]:
    """~400 records over five days, plus records on and next to every bound of USAGE_RANGES and the whole hours
    inside them."""
    records = spread(400, 0, T0, 5 * DAY, seed=3)
    edges: set[int] = set()
    for start, end in USAGE_RANGES:
        first_hour, last_hour = -(-start // HOUR) * HOUR, end // HOUR * HOUR
        for t in (start, end, first_hour, last_hour):
            edges.update((t - 1, t, t + 1))
    records += [make(10_000 + n, start_ns=t) for n, t in enumerate(sorted(edges))]
    return records


def test_usage_is_exact_for_any_range(store: SQLStore):
    records = usage_records()
    random.Random(1).shuffle(records)
    for i in range(0, len(records), 97):
        store.write(records[i : i + 97])
    for start, end in USAGE_RANGES:
        for group_by in USAGE_GROUPS:
            assert_usage(store, records, group_by, start, end)
        for filters in USAGE_FILTERS:
            for group_by in ([], ["hour"], ["request_model", "day"]):
                assert_usage(store, records, group_by, start, end, filters)
    assert_usage(store, records, [*DIMENSIONS, "hour"], T0 + 11 * MINUTE, T0 + 2 * DAY + 5 * MINUTE)


def test_usage_rejects_unknown_filters(store: SQLStore):
    with pytest.raises(ValueError, match="filters"):
        store.usage([], T0, T0 + DAY, {"model": "x"})
    with pytest.raises(ValueError, match="filters"):
        store.usage([], T0, T0 + DAY, {"service": "x"})  # a record column, not a rollup dimension


# A grouping that each family answers (the planner's choice is checked in test_rollups.py).
FAMILY_GROUPS = {rollup.MODEL: [], rollup.USER: ["user_id"], rollup.FULL: ["user_id", "provider"]}


@pytest.mark.parametrize("family", list(FAMILY_GROUPS), ids=lambda f: f.name)
def test_the_daily_rollup_answers_for_whole_days(store: SQLStore, family: rollup.Family):
    """The daily table holds each day's sums; usage() reads whole days from it, whole hours from the hourly table
    and the minutes at the ends from the records (shown by changing one stored rollup row at a time)."""
    records = spread(600, 0, T0, 4 * DAY, seed=8)
    store.write(records)
    assert_rollups(store, records, T0, T0 + 4 * DAY)
    daily = rollup_rows(store, family.daily, T0 - DAY, T0 + 10 * DAY)
    for day in range(T0, T0 + 4 * DAY, DAY):
        of_day = matching(records, day, day + DAY)
        assert sum(s["requests"] for k, s in daily.items() if k[0] == day) == len(of_day)
        assert sum(s["provider_cost_nusd"] for k, s in daily.items() if k[0] == day) == sum(
            r.provider_cost_nusd or 0 for r in of_day
        )

    # Add to one stored row of each rollup table: where usage() changes shows which table it read.
    groups = FAMILY_GROUPS[family]
    start, end = D1 + 5 * MINUTE, T0 + 4 * DAY - 3 * MINUTE  # whole day D1 + DAY, with hours and minutes around
    add_to_rollup(store, family.daily, D1 + DAY, 1_000_000)
    assert requests(store, groups, start, end) == len(matching(records, start, end)) + 1_000_000
    assert requests(store, [*groups, "hour"], start, end) == len(matching(records, start, end))  # hourly rows only
    assert requests(store, groups, D1 + DAY + 1, D1 + 2 * DAY) == len(matching(records, D1 + DAY + 1, D1 + 2 * DAY))

    hour = D1 + 5 * HOUR
    add_to_rollup(store, family.hourly, hour, 1000)
    assert requests(store, groups, hour - 10 * MINUTE, hour + 2 * HOUR) == 1000 + len(
        matching(records, hour - 10 * MINUTE, hour + 2 * HOUR)
    )
    assert requests(store, groups, hour + 1, hour + HOUR - 1) == len(matching(records, hour + 1, hour + HOUR - 1))
    assert requests(store, groups, D1, D1 + DAY) == len(matching(records, D1, D1 + DAY))


def add_to_rollup(store: SQLStore, table: rollup.Rollup, bucket: int, amount: int) -> None:
    """Adds `amount` requests to one stored row of a rollup table's bucket."""
    p = store.placeholder
    with store._transaction() as tx:
        (key,) = tx.rows(
            f"SELECT {', '.join(table.dimensions)} FROM {table.table} WHERE {table.bucket} = {p} LIMIT 1", (bucket,)
        )
        match = " AND ".join(f"{d} = {p}" for d in table.dimensions)
        sql = f"UPDATE {table.table} SET requests = requests + {p} WHERE {table.bucket} = {p} AND {match}"
        assert tx.run(sql, (amount, bucket, *key)) == 1


def requests(store: SQLStore, group_by: Sequence[str], start: int, end: int) -> int:
    """usage()'s request count over [start, end), summed over its groups."""
    return sum(int(row["requests"]) for row in store.usage(group_by, start, end))


# --- migrations 2 and 3 ------------------------------------------------------------------------------------------


def untiered(records: list[Record]) -> list[Record]:
    """The records as the code before migration 3 stored them: without a service tier."""
    return [dataclasses.replace(r, service_tier=None) for r in records]


ADDED_BY_5 = ("cache_write_1h_tokens", "speed", "input_audio_tokens", "output_audio_tokens", "web_searches")
ADDED_BY_6 = ("units",)
ADDED_BY_7 = ("parent_span_id", "seen_by")
ADDED_BY_8 = ("params", "dimensions")


def old_rows(records: Sequence[Record], dropped: Sequence[str]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns and rows of `records` as a schema without the `dropped` columns held them (the records must hold
    those columns' defaults, which the migration that adds them gives back)."""
    blank = Record("", 0, 0)
    assert all(getattr(r, c) == getattr(blank, c) for r in records for c in dropped)
    keep = [i for i, c in enumerate(COLUMNS) if c not in dropped]
    return [COLUMNS[i] for i in keep], [tuple(row[i] for i in keep) for row in map(record_to_row, records)]


def write_before_v3(store: SQLStore, records: list[Record], rollups: Sequence[rollup.Rollup]) -> None:
    """Writes records and rollup rows the way the code before migration 3 did: no `service_tier` column on the
    records, none in the rollup key (the records have no tier, so dropping it from the key merges nothing)."""
    p = store.placeholder
    columns, rows = old_rows(records, ("service_tier", *ADDED_BY_5, *ADDED_BY_6, *ADDED_BY_7, *ADDED_BY_8))
    key = 1 + rollup.DIMENSIONS.index("service_tier")
    hourly = rollup.aggregate(records)
    with store._transaction() as tx:
        tx.many(f"INSERT INTO completion_records ({', '.join(columns)}) VALUES ({', '.join([p] * len(columns))})", rows)
        for r in rollups:
            sums = rollup.rows_for(r, hourly)
            names = [r.bucket, *(d for d in rollup.DIMENSIONS if d != "service_tier"), *rollup.SUMS]
            tx.many(
                f"INSERT INTO {r.table} ({', '.join(names)}) VALUES ({', '.join([p] * len(names))})",
                [row[:key] + row[key + 1 :] for row in sums],
            )


def test_migration_backfills_the_daily_rollup(store_url: str, monkeypatch: pytest.MonkeyPatch):
    """A database written by the first schema only (no daily table; on PostgreSQL no `seq` column) gets its daily
    rollup from the hourly one when migration 2 runs, and pages work over the old records."""
    old = untiered(spread(300, 0, T0, 4 * DAY, seed=11))
    with monkeypatch.context() as m:
        # The first schema: records and hourly rollups only (written as that code did, without its staging tables).
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        m.setattr(postgres, "_STAGING", ())
        with open_store(store_url) as v1:
            assert isinstance(v1, SQLStore)
            write_before_v3(v1, old, (rollup.HOURLY,))
            assert v1.schema_versions() == [1]

    with open_store(store_url) as store:
        assert isinstance(store, SQLStore)
        assert store.schema_versions() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        assert_rollups(store, old, T0, T0 + 4 * DAY)
        for group_by in ([], ["day"], ["user_id", "day"], ["request_model"]):
            assert_usage(store, old, group_by, T0, T0 + 4 * DAY)
            assert_usage(store, old, group_by, D1, D1 + 2 * DAY)
        assert store.snapshot() > 0
        if store.placeholder == "%s":
            assert store._query("SELECT COUNT(*) FROM completion_records WHERE seq IS NULL", ())[0][0] == 0
        everything = Selection(T0, T0 + 4 * DAY)
        assert [r.record_id for r in walk(store, everything, 37)] == page_order(old, newest_first=True)

        new = spread(100, 1000, T0, 4 * DAY, seed=12)
        assert store.write(new) == new  # added to the backfilled daily rows
        assert_rollups(store, old + new, T0, T0 + 4 * DAY)
        assert_usage(store, old + new, ["user_id", "day"], T0 + 7 * MINUTE, T0 + 4 * DAY)
        assert [r.record_id for r in walk(store, everything, 37, newest_first=False)] == page_order(old + new, False)


def test_migration_adds_the_service_tier_to_records_and_rollups(store_url: str, monkeypatch: pytest.MonkeyPatch):
    """A database of schema 2 (records and both rollups without a service tier) keeps every sum when migration 3
    rebuilds its rollups with the tier in the key; new tiered records then roll up and group by tier."""
    old = untiered(spread(300, 0, T0, 4 * DAY, seed=21))
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        m.setattr(postgres, "_STAGING", ())  # the staging tables of the current code do not fit schema 2
        with open_store(store_url) as v2:
            assert isinstance(v2, SQLStore)
            write_before_v3(v2, old, (rollup.HOURLY, rollup.DAILY))
            assert v2.schema_versions() == [1, 2]

    with open_store(store_url) as store:
        assert isinstance(store, SQLStore)
        assert store.schema_versions() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        assert store.get(old[0].record_id) == old[0]
        assert_rollups(store, old, T0, T0 + 4 * DAY)
        for group_by in ([], ["day"], ["service_tier", "day"], [*DIMENSIONS, "hour"]):
            assert_usage(store, old, group_by, T0 + 7 * MINUTE, T0 + 4 * DAY)
        new = spread(200, 1000, T0, 4 * DAY, seed=22)
        assert {r.service_tier for r in new} == {None, "default", "priority", "flex"}
        assert store.write(new) == new
        assert store.get(new[2].record_id) == new[2]
        assert_rollups(store, old + new, T0, T0 + 4 * DAY)
        for group_by in (["service_tier"], ["service_tier", "day"], ["provider", "service_tier", "hour"]):
            assert_usage(store, old + new, group_by, T0 + 7 * MINUTE, T0 + 4 * DAY - 1)
        tiers = {row["service_tier"]: row["requests"] for row in store.usage(["service_tier"], T0, T0 + 4 * DAY)}
        assert tiers == {
            tier or "": sum(1 for r in old + new if (r.service_tier or "") == (tier or ""))
            for tier in ("", "default", "priority", "flex")
        }
        priority = store.usage([], T0, T0 + 4 * DAY, {"service_tier": "priority"})
        assert priority[0]["requests"] == sum(1 for r in new if r.service_tier == "priority") > 0


# --- page() ------------------------------------------------------------------------------------------------------


def http_status_of(i: int) -> int | None:
    if i % 17 == 0:
        return None
    if i % 11 == 0:  # make() makes these errors
        return (429, 503, 404, 500)[i // 11 % 4]
    return 200


def log_records(n: int, first: int = 0, start: int = T0) -> list[Record]:
    """n records, three at each start time (7 minutes apart), with HTTP statuses and services."""
    return [
        make(
            i,
            start_ns=start + (i - first) // 3 * 7 * MINUTE,
            http_status=http_status_of(i),
            service=f"svc{i % 2}" if i % 4 else None,
        )
        for i in range(first, first + n)
    ]


def most_common(records: Iterable[Record], name: str) -> str:
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        value = getattr(r, name)
        if value is not None:
            counts[value] += 1
    return max(sorted(counts), key=counts.__getitem__)


def status_matches(r: Record, status: str) -> bool:
    if status in ("success", "error"):
        return r.status == status
    low = 400 if status == "4xx" else 500
    return r.http_status is not None and low <= r.http_status < low + 100


def test_pages_filter_order_and_end(store: SQLStore):
    records = log_records(400)
    store.write(records)
    start, end = T0 + HOUR + 7, T0 + DAY + 5 * HOUR  # about 300 of them
    in_range = matching(records, start, end)
    cases: list[tuple[dict[str, str], str | None]] = [({}, None)]
    cases += [({name: most_common(in_range, name)}, None) for name in FILTER_COLUMNS]
    cases += [({}, status) for status in ("success", "error", "4xx", "5xx")]
    cases += [({"provider": "openai"}, "error"), ({"user_id": "user2", "request_model": "gpt-4o-mini"}, None)]
    for equal, status in cases:
        selection = Selection(start, end, equal=equal, status=status)
        want = [
            r
            for r in in_range
            if all(getattr(r, k) == v for k, v in equal.items()) and (status is None or status_matches(r, status))
        ]
        assert 0 < len(want) < len(records), (equal, status)
        assert store.count_matching(selection) == len(want)
        for newest_first in (True, False):
            for limit in (1, 7, len(want), 1000):
                got = walk(store, selection, limit, newest_first)
                assert [r.record_id for r in got] == page_order(want, newest_first), (equal, status, limit)
        assert walk(store, selection, 5)[0] == max(want, key=lambda r: (r.start_time_ns, r.record_id))
    assert store.page(Selection(T0 - DAY, T0), 10) == ([], None)
    assert store.oldest_start_ns() == T0


def test_pages_break_ties_by_record_id(store: SQLStore):
    """Records with one start time are ordered by record_id and none is lost where a page ends among them."""
    same = [make(i, start_ns=D1 + 5) for i in range(30)]
    around = [make(100 + i, start_ns=D1 + 5 + d) for i, d in enumerate((-2, -1, 1, 2))]
    store.write(list(reversed(same)) + around)
    for newest_first in (True, False):
        for limit in (1, 4, 7, 29, 30, 31):
            got = walk(store, Selection(D1, D1 + HOUR), limit, newest_first)
            assert [r.record_id for r in got] == page_order(same + around, newest_first), (limit, newest_first)


@pytest.mark.parametrize("newest_first", [True, False])
def test_pages_ignore_records_written_after_the_first(store: SQLStore, newest_first: bool):
    """Between pages, new records are written at times already paged through, at the very position the next page
    starts from, further along the walk, and after the range: the walk returns exactly the records stored before
    its first page, each once."""
    before = log_records(300)
    store.write(before)
    selection = Selection(T0, T0 + 2 * DAY)
    added: list[Record] = []
    number = iter(range(100_000, 200_000))

    def write_more(cursor: Cursor) -> None:
        t = cursor.start_time_ns
        behind, ahead = (t + 3 * MINUTE, t - 3 * MINUTE) if newest_first else (t - 3 * MINUTE, t + 3 * MINUTE)
        # "-" sorts before, and "~" after, the hex digits of make()'s ids: next in page order at the cursor's time.
        at_cursor = "-new-" if newest_first else "~new-"
        fresh = [
            make(next(number), start_ns=behind),
            make(next(number), start_ns=ahead),
            make(next(number), start_ns=t, record_id=f"{at_cursor}{len(added):06d}"),
            make(next(number), start_ns=T0 + 3 * DAY + len(added)),
        ]
        assert store.write(fresh) == fresh
        added.extend(fresh)

    got = walk(store, selection, 9, newest_first, between_pages=write_more)
    assert len(added) > 100
    assert [r.record_id for r in got] == page_order(matching(before, T0, T0 + 2 * DAY), newest_first)
    # A new walk sees them all.
    again = walk(store, selection, 9, newest_first)
    assert [r.record_id for r in again] == page_order(matching(before + added, T0, T0 + 2 * DAY), newest_first)


def test_pages_while_another_store_writes(opener: Callable[[], SQLStore]):
    """A second store writes batches on another thread throughout a walk. The walk holds every batch stored before
    its first page, none begun after its first page, no record twice, in strict page order."""
    store, writer = opener(), opener()
    base = log_records(300)
    store.write(base)
    selection = Selection(T0, T0 + 2 * DAY)
    batches: list[list[Record]] = []
    started: list[int] = []
    finished: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def write_batches() -> None:
        rnd = random.Random(4)
        try:
            for k in range(10_000):
                if stop.is_set():
                    return
                batch = [make(200_000 + 5 * k + j, start_ns=T0 + rnd.randrange(3 * DAY)) for j in range(5)]
                batches.append(batch)
                started.append(k)
                writer.write(batch)
                finished.append(k)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=write_batches)
    thread.start()
    try:
        while len(finished) < 3 and thread.is_alive():
            time.sleep(0.001)
        done_before = len(finished)
        first, cursor = store.page(selection, 7)
        begun_by = len(started)
        got = list(first)
        for _ in range(MAX_PAGES):
            if cursor is None:
                break
            time.sleep(0.001)
            records, cursor = store.page(selection, 7, cursor)
            got += records
        written_during = len(finished) - begun_by
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert cursor is None, f"no last page after {MAX_PAGES} pages"
    assert written_during > 0, "the walk ended before another batch was written"
    ids = [r.record_id for r in got]
    assert len(ids) == len(set(ids))
    keys = [(r.start_time_ns, r.record_id) for r in got]
    assert keys == sorted(keys, reverse=True)
    surely = {r.record_id for r in matching(base + flat(batches[:done_before]), T0, T0 + 2 * DAY)}
    at_most = {r.record_id for r in matching(base + flat(batches[:begun_by]), T0, T0 + 2 * DAY)}
    assert surely <= set(ids) <= at_most


def flat(batches: Iterable[list[Record]]) -> list[Record]:
    return [r for batch in batches for r in batch]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a cursor!",
        "%%%",
        "W10",  # []
        "eyJhIjoxfQ",  # {"a":1}
        Cursor(1, 2, "x").encode()[:-3],
        "WyJ4IiwyLCJ4Il0",  # ["x",2,"x"]
        "WzEsMiwzXQ",  # [1,2,3]
    ],
)
def test_garbage_cursors_are_refused(text: str):
    with pytest.raises(BadCursor):
        Cursor.decode(text)
    assert issubclass(BadCursor, ValueError)


def test_cursor_text_round_trips():
    cursor = Cursor(12345, T0 + 17, "00f067aa0ba902b7")
    assert Cursor.decode(cursor.encode()) == cursor


# --- iter_records() ----------------------------------------------------------------------------------------------


def test_iter_records_yields_each_record_once_in_order(store: SQLStore):
    records = [make(i, start_ns=T0 + i // 4 * 1_000_003) for i in range(5000)]  # four at each start time
    shuffled = records[:]
    random.Random(2).shuffle(shuffled)
    for i in range(0, 5000, 500):
        store.write(shuffled[i : i + 500])
    everything = Selection(T0, T0 + DAY)
    ascending = sorted(records, key=lambda r: (r.start_time_ns, r.record_id))
    assert at_most(5001, store.iter_records(everything, chunk=333)) == ascending
    assert at_most(5001, store.iter_records(everything, chunk=333, newest_first=True)) == ascending[::-1]
    groq = Selection(T0, T0 + DAY, equal={"provider": "groq"})
    assert at_most(5001, store.iter_records(groq, chunk=333)) == [r for r in ascending if r.provider == "groq"]
    assert store.count_matching(everything) == 5000
    assert store.oldest_start_ns() == T0

    iterating = store.iter_records(everything, chunk=333)
    head = [next(iterating) for _ in range(500)]
    store.write([make(i, start_ns=T0 + 7) for i in range(5000, 5010)])  # after the iteration began
    assert head + at_most(5001, iterating) == ascending


def at_most(n: int, records: Iterable[Record]) -> list[Record]:
    """The first n records (an iteration that repeats itself fails instead of running on)."""
    return list(itertools.islice(records, n))


# --- delete_between() --------------------------------------------------------------------------------------------


def test_delete_between_removes_whole_days(store: SQLStore):
    records = [*spread(500, 0, T0, 5 * DAY, seed=21), make(1000, start_ns=D1), make(1001, start_ns=D1 + 2 * DAY - 1)]
    store.write(records)
    gone = matching(records, D1, D1 + 2 * DAY)
    kept = [r for r in records if r not in gone]
    usage_before = {b: store.usage(["user_id", "hour"], *b) for b in ((T0, D1), (D1 + 2 * DAY, T0 + 5 * DAY))}

    for start, end in ((D1 + 1, D1 + 2 * DAY), (D1, D1 + 2 * DAY - HOUR), (D1 - HOUR, D1 + DAY)):
        with pytest.raises(ValueError, match="day"):
            store.delete_between(start, end)
    assert store.count() == len(records)

    assert store.delete_between(D1, D1 + 2 * DAY) == len(gone) > 0
    assert store.count() == len(kept)
    assert store.count_matching(Selection(D1, D1 + 2 * DAY)) == 0
    assert all(store.get(r.record_id) is None for r in gone)
    assert all(store.get(r.record_id) == r for r in kept)
    for table in rollup.ROLLUPS:
        assert rollup_rows(store, table, D1, D1 + 2 * DAY) == {}, table.table
    assert_rollups(store, kept, T0 - DAY, T0 + 6 * DAY)
    for bounds, rows in usage_before.items():
        assert store.usage(["user_id", "hour"], *bounds) == rows
    for start, end in ((T0, T0 + 5 * DAY), (T0 + 13 * MINUTE, T0 + 4 * DAY + 2 * MINUTE), (D1, D1 + DAY)):
        for group_by in ([], ["day"], ["provider", "status"]):
            assert_usage(store, kept, group_by, start, end)
    assert store.delete_between(D1, D1 + 2 * DAY) == 0
    assert store.delete_between(T0 + 10 * DAY, T0 + 11 * DAY) == 0


# --- drop_payloads_between() -------------------------------------------------------------------------------------


def with_payload(r: Record, i: int) -> Record:
    if i % 3 == 0:
        r.input_messages = f'[{{"role": "user", "content": "question {i}"}}]'
    if i % 4 == 0:
        r.output_messages = f'[{{"role": "assistant", "content": "answer {i}"}}]'
    return r


def test_drop_payloads_between_keeps_everything_else(store: SQLStore):
    records = [with_payload(r, i) for i, r in enumerate(spread(400, 0, T0, 3 * DAY, seed=31))]
    store.write(records)
    start, end = T0 + 5 * HOUR + 3 * MINUTE, T0 + 2 * DAY + 1
    groupings = ([], ["hour"], ["user_id", "day"], [*DIMENSIONS, "hour"])
    usage_before = [store.usage(g, T0, T0 + 3 * DAY) for g in groupings]

    had = [r for r in matching(records, start, end) if r.input_messages or r.output_messages]
    assert store.drop_payloads_between(start, end) == len(had) > 0
    for r in records:
        want = copy.deepcopy(r)
        if start <= r.start_time_ns < end:
            want.input_messages = want.output_messages = None
        assert store.get(r.record_id) == want
    assert [store.usage(g, T0, T0 + 3 * DAY) for g in groupings] == usage_before
    assert store.drop_payloads_between(start, end) == 0
    assert store.count() == len(records)


# --- reprice_between() -------------------------------------------------------------------------------------------


def double_provider_cost(r: Record) -> bool:
    """Doubles a priced record's provider cost; prices an unpriced one; notes it in the events."""
    if r.provider_cost_nusd is None:
        r.provider_cost_nusd, r.customer_cost_nusd, r.priced = 5_000, 7_000, True
    else:
        r.provider_cost_nusd *= 2
    r.price_source = "test prices v2"
    r.events = [*r.events, {"type": "repriced", "factor": 2}]
    return True


def test_reprice_between_updates_records_and_rollups(store: SQLStore):
    records = spread(500, 0, T0, 3 * DAY, seed=41)
    store.write(records)
    start, end = D1 + 3 * HOUR + 5 * MINUTE, D1 + 17 * HOUR + 1  # part of one day
    in_range = matching(records, start, end)
    assert any(not r.priced for r in in_range)
    other_days_before = {
        table.table: rollup_rows(store, table, T0, D1) | rollup_rows(store, table, D1 + DAY, T0 + 3 * DAY)
        for table in rollup.ROLLUPS
    }

    assert store.reprice_between(start, end, double_provider_cost) == len(in_range)
    now = [copy.deepcopy(r) for r in records]
    for r in now:
        if start <= r.start_time_ns < end:
            double_provider_cost(r)
    for r in now:
        assert store.get(r.record_id) == r
    assert store.get(in_range[0].record_id).events[-1] == {"type": "repriced", "factor": 2}  # type: ignore[union-attr]
    assert_rollups(store, now, D1, D1 + DAY)
    for group_by in ([], ["hour"], ["user_id", "status"], [*DIMENSIONS, "hour"]):
        assert_usage(store, now, group_by, D1, D1 + DAY)
        assert_usage(store, now, group_by, T0 + 30 * MINUTE, T0 + 3 * DAY - 1)
    for table in rollup.ROLLUPS:
        after = rollup_rows(store, table, T0, D1) | rollup_rows(store, table, D1 + DAY, T0 + 3 * DAY)
        assert after == other_days_before[table.table]

    rollups_now = {table.table: rollup_rows(store, table, T0, T0 + 3 * DAY) for table in rollup.ROLLUPS}
    assert store.reprice_between(D1, D1 + DAY, lambda r: False) == 0
    assert all(store.get(r.record_id) == r for r in now)
    assert {table.table: rollup_rows(store, table, T0, T0 + 3 * DAY) for table in rollup.ROLLUPS} == rollups_now
    with pytest.raises(ValueError, match="one UTC day"):
        store.reprice_between(D1 + HOUR, D1 + DAY + 1, double_provider_cost)
    assert all(store.get(r.record_id) == r for r in now)
