"""The rollup families on SQLite and on a real PostgreSQL server: every table (the full key's and the narrow ones',
hourly and daily) equals a group-by of the records after writes with retries, repricing, retention and migration
4's backfill; usage() reads the narrowest table that holds a query's groups and filters; the errors and insights
reports take one query per family. Every expectation is computed here from the records written."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from test_store_queries import (
    ADDED_BY_5,
    ADDED_BY_6,
    ADDED_BY_7,
    ADDED_BY_8,
    D1,
    MINUTE,
    assert_rollups,
    assert_usage,
    double_provider_cost,
    matching,
    old_rows,
    rollup_rows,
    spread,
)

from llmtally.exporter.api import reports
from llmtally.exporter.api.params import Filters, TimeRange
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.store import open_store, postgres, rollup, schema
from llmtally.exporter.store.sql import SQLStore
from llmtally.exporter.store.usage import family_for, usage_sql
from test_store import DAY, HOUR, T0

NARROW = [t for t in rollup.ROLLUPS if t.dimensions != rollup.DIMENSIONS]
ROLLUP_TABLE = re.compile(r"FROM (completion_\w+)")
# (group_by, filters) -> the family that answers it.
PLANS = [
    ([], {}, rollup.MODEL),
    (["request_model"], {}, rollup.MODEL),
    (["provider", "request_model", "status", "error_type", "day"], {"environment": "production"}, rollup.MODEL),
    (["service_tier", "hour"], {"operation": "chat"}, rollup.MODEL),
    (["user_id"], {}, rollup.USER),
    (["user_id", "day"], {}, rollup.USER),
    (["feature", "api_key"], {"department": "research", "environment": ""}, rollup.USER),
    ([], {"user_id": "user1"}, rollup.USER),
    (["request_model"], {"user_id": "user1"}, rollup.FULL),
    (["user_id"], {"status": "error"}, rollup.FULL),
    ([*rollup.DIMENSIONS, "hour"], {}, rollup.FULL),
]
# Groupings and filters answered by each family, checked against the records over unaligned ranges.
CHECKS = [(groups, filters) for groups, filters, _ in PLANS] + [
    (["request_model", "day"], {"status": "error"}),
    (["department"], {"feature": ""}),
]
RANGES = [
    (T0, T0 + 4 * DAY),
    (T0 + 7 * MINUTE + 3, T0 + 3 * DAY + 5 * HOUR + 1),
    (D1 + 20 * HOUR + 30 * MINUTE, D1 + DAY + 4 * HOUR + 10 * MINUTE),
    (D1 + 10 * MINUTE, D1 + 50 * MINUTE),
]


def varied(n: int, first: int, seed: int) -> list[Record]:
    """n records over four days, with more environments and statuses than make() alone gives."""
    rnd = random.Random(seed)
    out = []
    for r in spread(n, first, T0, 4 * DAY, seed):
        r.environment = rnd.choice(["production", "staging", None])
        out.append(r)
    return out


def write_with_retries(store: SQLStore, records: Sequence[Record], seed: int) -> None:
    """Writes the records in shuffled batches, a fifth of them sent twice."""
    rnd = random.Random(seed)
    stream = [*records, *rnd.sample(list(records), len(records) // 5)]
    rnd.shuffle(stream)
    for i in range(0, len(stream), 113):
        store.write(stream[i : i + 113])


def assert_answers(store: SQLStore, records: Sequence[Record]) -> None:
    for start, end in RANGES:
        for groups, filters in CHECKS:
            assert_usage(store, records, groups, start, end, filters)


def test_every_rollup_equals_the_records_after_writes_reprice_and_retention(store: SQLStore):
    records = varied(700, 0, seed=1)
    write_with_retries(store, records, seed=2)
    assert store.count() == len(records)
    assert_rollups(store, records, T0 - DAY, T0 + 5 * DAY)
    assert all(rollup_rows(store, t, T0, T0 + 4 * DAY) for t in NARROW)
    assert_answers(store, records)

    start, end = D1 + 2 * HOUR + 7 * MINUTE, D1 + 19 * HOUR + 1
    assert store.reprice_between(start, end, double_provider_cost) == len(matching(records, start, end)) > 0
    for r in records:
        if start <= r.start_time_ns < end:
            double_provider_cost(r)
    assert_rollups(store, records, T0 - DAY, T0 + 5 * DAY)
    assert_answers(store, records)

    gone = matching(records, T0 + 2 * DAY, T0 + 3 * DAY)
    assert store.delete_between(T0 + 2 * DAY, T0 + 3 * DAY) == len(gone) > 0
    kept = [r for r in records if r not in gone]
    for table in rollup.ROLLUPS:
        assert rollup_rows(store, table, T0 + 2 * DAY, T0 + 3 * DAY) == {}, table.table
    assert_rollups(store, kept, T0 - DAY, T0 + 5 * DAY)

    more = varied(300, 5000, seed=3)
    write_with_retries(store, more, seed=4)
    assert_rollups(store, kept + more, T0 - DAY, T0 + 5 * DAY)
    assert_answers(store, kept + more)


def write_as_schema_3(store: SQLStore, records: Sequence[Record]) -> None:
    """Writes records and full rollup rows as the code of schema 3 did (it had no narrow rollups)."""
    p = store.placeholder
    hourly = rollup.aggregate(records)
    columns, rows = old_rows(records, (*ADDED_BY_5, *ADDED_BY_6, *ADDED_BY_7, *ADDED_BY_8))
    with store._transaction() as tx:
        tx.many(f"INSERT INTO completion_records ({', '.join(columns)}) VALUES ({', '.join([p] * len(columns))})", rows)
        for table in (rollup.HOURLY, rollup.DAILY):
            names = [*table.key, *rollup.SUMS]
            sql = f"INSERT INTO {table.table} ({', '.join(names)}) VALUES ({', '.join([p] * len(names))})"
            tx.many(sql, rollup.rows_for(table, hourly))


def test_migration_4_backfills_the_narrow_rollups(store_url: str, monkeypatch: pytest.MonkeyPatch):
    old = varied(400, 0, seed=5)
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:3])
        m.setattr(postgres, "_STAGING", ())  # the staging tables of the current code need the narrow tables
        with open_store(store_url) as v3:
            assert isinstance(v3, SQLStore)
            write_as_schema_3(v3, old)
            assert v3.schema_versions() == [1, 2, 3]

    with open_store(store_url) as store:
        assert isinstance(store, SQLStore)
        assert store.schema_versions() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        assert_rollups(store, old, T0 - DAY, T0 + 5 * DAY)
        assert_answers(store, old)
        new = varied(200, 5000, seed=6)
        assert store.write(new) == new  # added to the backfilled rows
        assert_rollups(store, old + new, T0 - DAY, T0 + 5 * DAY)
        assert_answers(store, old + new)


# --- the planner -------------------------------------------------------------------------------------------------


def tables(sql: str) -> list[str]:
    return ROLLUP_TABLE.findall(sql)


@pytest.mark.parametrize(("groups", "filters", "family"), PLANS, ids=lambda v: getattr(v, "name", None))
def test_usage_reads_the_narrowest_family_that_holds_the_query(
    groups: list[str], filters: dict[str, str], family: rollup.Family
):
    assert family_for(groups, filters) is family
    daily_ok = "hour" not in groups
    sql, params, _ = usage_sql(groups, T0, T0 + 30 * DAY, filters, "%s")  # whole days
    assert tables(sql) == [family.daily.table if daily_ok else family.hourly.table]
    # An unaligned range: the family's hourly table at each end, the records for the minutes outside whole hours,
    # each range its own branch (no OR of ranges).
    sql, params, _ = usage_sql(groups, T0 + 29 * MINUTE, T0 + 29 * DAY + 23 * HOUR + 29 * MINUTE, filters, "%s")
    middle = [family.hourly.table, family.daily.table, family.hourly.table] if daily_ok else [family.hourly.table]
    assert tables(sql) == [rollup.RECORDS, *middle, rollup.RECORDS]
    assert " OR " not in sql
    assert len(params) == sql.count("%s") == len(tables(sql)) * (2 + len(filters))


@contextmanager
def queries(store: SQLStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The SQL of every read the store makes inside the block."""
    seen: list[str] = []
    read = store._query

    def spy(sql: str, params: Any) -> list[tuple[Any, ...]]:
        seen.append(sql)
        return read(sql, params)

    with monkeypatch.context() as m:
        m.setattr(store, "_query", spy)
        yield seen


def test_errors_and_insights_take_one_query_per_family(store: SQLStore, monkeypatch: pytest.MonkeyPatch):
    records = varied(600, 0, seed=7)
    store.write(records)
    span = TimeRange("custom", T0 + 13 * MINUTE, T0 + 3 * DAY + 7 * HOUR)
    current = matching(records, span.start_ns, span.end_ns)

    with queries(store, monkeypatch) as seen:
        report = reports.errors(store, span, Filters())
    assert [set(tables(q)) - {rollup.RECORDS} for q in seen] == [{rollup.MODEL.hourly.table, rollup.MODEL.daily.table}]
    failed = [r for r in current if r.status == "error"]
    assert (report["total_requests"], report["total_errors"]) == (len(current), len(failed))
    assert {e["type"]: e["count"] for e in report["by_type"]} == Counter(r.error_type or "unknown" for r in failed)
    by_model = {e["model"]: (e["errors"], e["requests"]) for e in report["by_model"]}
    assert by_model == {
        m: (
            sum(r.status == "error" for r in current if r.request_model == m),
            sum(r.request_model == m for r in current),
        )
        for m in {r.request_model for r in failed}
    }

    with queries(store, monkeypatch) as seen:
        report = reports.insights(store, span, Filters())
    families = [set(tables(q)) - {rollup.RECORDS} for q in seen]
    model, user = (
        {rollup.MODEL.hourly.table, rollup.MODEL.daily.table},
        {rollup.USER.hourly.table, rollup.USER.daily.table},
    )
    # This period by model, by user; the previous one's total; then, for the savings advice, how the top models'
    # requests were sent (from the records, when a model is in the catalog).
    assert families[:3] == [model, user, model] and all(f == set() for f in families[3:]) and len(families) <= 4
    assert report["requests"] == len(current)
    for name, column in (
        ("model", "request_model"),
        ("user", "user_id"),
        ("feature", "feature"),
        ("api_key", "api_key"),
    ):
        costs = Counter[str]()
        counts = Counter[str]()
        for r in current:
            costs[getattr(r, column) or ""] += r.customer_cost_nusd or 0
            counts[getattr(r, column) or ""] += 1
        ranked = sorted(costs, key=lambda k: (-costs[k], k))[:5]
        assert [(d[name], d["requests"]) for d in report["top_cost_drivers"][name]] == [(k, counts[k]) for k in ranked]

    # With a status other than "error" the types still come from the errors: one more query, on the model family.
    with queries(store, monkeypatch) as seen:
        report = reports.errors(store, span, Filters(status="success"))
    assert len(seen) == 2 and report["total_errors"] == 0
    assert sum(e["count"] for e in report["by_type"]) == len(failed)
