"""The audit store on SQLite and on a real PostgreSQL server: round trips, idempotency, rollups, failures."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerrors

from conftest import new_pg_server
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.store import (
    GROUPS,
    RecordRejected,
    Store,
    StoreError,
    StoreFull,
    StoreUnavailable,
    open_store,
    postgres,
    schema,
)
from llmtally.exporter.store.columns import COLUMNS, record_to_row
from llmtally.exporter.store.postgres import store_error as postgres_store_error
from llmtally.exporter.store.rollup import DIMENSIONS
from llmtally.exporter.store.sql import SQLStore
from llmtally.exporter.store.sqlite import SQLiteStore
from pg_server import free_port

HOUR = 3_600_000_000_000
DAY = 24 * HOUR
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z, a day boundary
INT_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "provider_cost_nusd",
    "customer_cost_nusd",
    "unpriced_requests",
    "ttft_count",
)
FLOAT_SUMS = ("duration_s_sum", "ttft_s_sum")


# --- fixtures ----------------------------------------------------------------------------------------------------


# --- helpers -----------------------------------------------------------------------------------------------------


def make(i: int, start_ns: int | None = None, **fields: Any) -> Record:
    """A varied, deterministic record number i."""
    rnd = random.Random(i)
    start = T0 + i * 7_000_000_001 if start_ns is None else start_ns
    error = i % 11 == 0
    streamed = i % 2 == 0
    priced = i % 13 != 0
    inp, out = rnd.randrange(1, 5000), rnd.randrange(0, 900)
    values: dict[str, Any] = {
        "record_id": f"{i:016x}",
        "start_time_ns": start,
        "end_time_ns": start + 1_500_000_000,
        "provider": ("openai", "anthropic", "groq")[i % 3],
        "operation": "chat",
        "request_model": ("gpt-4o-mini", "claude-haiku-4-5", "llama-3.3")[i % 3],
        "response_model": ("gpt-4o-mini-2024-07-18", "claude-haiku-4-5-20251001", "llama-3.3")[i % 3],
        "status": "error" if error else "success",
        "error_type": "rate_limit" if error else None,
        "duration_s": rnd.uniform(0.1, 5.0),
        "ttft_s": rnd.uniform(0.01, 1.0) if streamed else None,
        "stream": streamed,
        "input_tokens": inp,
        "output_tokens": out,
        "total_tokens": inp + out,
        "cached_tokens": inp // 4,
        "cache_write_tokens": inp // 10,
        "reasoning_tokens": out // 5,
        "provider_cost_nusd": inp * 150 + out * 600 if priced else None,
        "customer_cost_nusd": inp * 180 + out * 720 + 1000 if priced else None,
        "priced": priced,
        "user_id": None if i % 7 == 0 else f"user{i % 5}",
        "api_key": f"team-{i % 4}",
        "feature": None if i % 6 == 0 else f"feature{i % 3}",
        "department": "research" if i % 2 else None,
        "environment": "production",
        "service_tier": (None, "default", "priority", "flex")[i % 4],
        "finish_reasons": [] if error else ["stop"],
    }
    values.update(fields)
    return Record(**values)


def expected_usage(records: Sequence[Record], group_by: Sequence[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """usage() computed independently, straight from the records."""
    out: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: dict.fromkeys(INT_SUMS, 0) | dict.fromkeys(FLOAT_SUMS, 0.0)
    )
    for r in records:
        key = []
        for g in group_by:
            if g == "hour":
                key.append(r.start_time_ns // HOUR * HOUR)
            elif g == "day":
                key.append(r.start_time_ns // DAY * DAY)
            else:
                key.append(getattr(r, g) or "")
        s = out[tuple(key)]
        s["requests"] += 1
        s["errors"] += r.status == "error"
        for name in INT_SUMS[2:8]:  # the six token counts
            s[name] += getattr(r, name)
        s["provider_cost_nusd"] += r.provider_cost_nusd or 0
        s["customer_cost_nusd"] += r.customer_cost_nusd or 0
        s["unpriced_requests"] += not r.priced
        s["duration_s_sum"] += r.duration_s
        if r.ttft_s is not None:
            s["ttft_s_sum"] += r.ttft_s
            s["ttft_count"] += 1
    return dict(out)


def assert_usage(store: Store, records: Sequence[Record], group_by: Sequence[str], start=T0 - DAY, end=T0 + 30 * DAY):
    got = {tuple(row[g] for g in group_by): row for row in store.usage(group_by, start, end)}
    want = expected_usage([r for r in records if start <= r.start_time_ns // HOUR * HOUR < end], group_by)
    if not group_by and not want:
        want = {(): dict.fromkeys(INT_SUMS, 0) | dict.fromkeys(FLOAT_SUMS, 0.0)}
    assert set(got) == set(want)
    for key, sums in want.items():
        assert {n: got[key][n] for n in INT_SUMS} == {n: sums[n] for n in INT_SUMS}, key
        assert {n: got[key][n] for n in FLOAT_SUMS} == pytest.approx({n: sums[n] for n in FLOAT_SUMS}), key


def full_record() -> Record:
    """A record in which every field differs from its default."""
    return Record(
        record_id="00f067aa0ba902b7",
        start_time_ns=T0 + 123_456_789,
        end_time_ns=T0 + 1_373_456_790,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
        provider="anthropic",
        operation="chat",
        request_model="claude-sonnet-4-5",
        response_model="claude-sonnet-4-5-20250929",
        status="error",
        http_status=429,
        error_type="rate_limit",
        error_message="Rate limited: ünïcode ✓ 'single' \"double\" \\ back\tslash\nnew line; DROP TABLE x; --",
        duration_s=1.25,
        ttft_s=0.333,
        stream=True,
        stream_outcome="closed_early",
        input_tokens=1_200,
        output_tokens=340,
        total_tokens=1_540,
        cached_tokens=800,
        cache_write_tokens=100,
        cache_write_1h_tokens=60,
        reasoning_tokens=40,
        input_audio_tokens=300,
        output_audio_tokens=90,
        web_searches=2,
        units={"audio_seconds": 12.25, "images": 2, "input_image_tokens": 700},
        usage_source="partial",
        service_tier="priority",
        speed="fast",
        provider_cost_nusd=1_000_000_000_000_007,
        customer_cost_nusd=1_200_000_000_001_009,
        price_source="genai-prices 0.2.3 anthropic/claude-sonnet-4-5",
        priced=True,
        user_id="u1",
        api_key="team-a",
        feature="signal_parsing",
        department="research",
        environment="staging",
        service="signal-service",
        source_ip="10.0.0.7",
        response_id="msg_01XFDUDYJgAACzvnptvVoYEL",
        request_id="req_011CSHoEeqs5C35K2UUqR7Fy",
        finish_reasons=["length", "stop"],
        events=[{"type": "retry", "attempt": 1, "error.type": "rate_limit", "wait_s": 0.5, "nested": {"a": [1, None]}}],
        ratelimits={"requests.remaining": 99.0, "tokens.limit": 80000.0, "tokens.reset": 0.25},
        input_messages='[{"role": "user", "content": "héllo"}]',
        output_messages='[{"role": "assistant", "content": "hi ✓"}]',
        source="openllmetry",
        parent_span_id="b7ad6b7169203331",
        seen_by=["llmtally", "openllmetry"],
        params={"temperature": 0.2, "max_tokens": 256, "stop_sequences": ["END"], "reasoning_effort": "low"},
        dimensions={"team": "platform", "billing_mode": "prepaid"},
    )


# --- round trip --------------------------------------------------------------------------------------------------


def test_every_field_round_trips(store: Store):
    full = full_record()
    defaults = Record(record_id="minimal", start_time_ns=T0, end_time_ns=T0 + 1)
    for f in dataclasses.fields(Record):
        assert getattr(full, f.name) != getattr(defaults, f.name), f"full_record() leaves {f.name} at its default"

    assert store.write([full, defaults]) == [full, defaults]
    assert store.get(full.record_id) == full
    assert store.get(defaults.record_id) == defaults
    assert store.get("missing") is None
    assert store.records_between(T0, T0 + HOUR, 10) == [defaults, full]
    assert store.count() == 2


def test_schema_has_the_tables_and_indexes(store: Store):
    rows = store._query("SELECT start_time FROM completion_records", ())  # type: ignore[attr-defined]
    assert rows == []
    store.write([make(1, start_ns=T0 + 1_500_000_000)])
    (value,) = store._query("SELECT start_time FROM completion_records", ())[0]  # type: ignore[attr-defined]
    assert str(value).replace(" ", "T").startswith("2026-01-01T00:00:01.5")  # human-readable start, derived
    assert store.schema_versions() == [m.version for m in schema.MIGRATIONS] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # type: ignore[attr-defined]


def test_records_between_is_a_half_open_range_in_time_order(store: Store):
    records = [make(i, start_ns=T0 + (9 - i) * HOUR) for i in range(10)]  # written newest first
    store.write(records)
    got = store.records_between(T0 + 2 * HOUR, T0 + 5 * HOUR, 100)
    assert [r.start_time_ns for r in got] == [T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR]
    assert len(store.records_between(T0, T0 + 10 * HOUR, 4)) == 4


# --- idempotency -------------------------------------------------------------------------------------------------


def test_the_same_batch_twice_is_stored_once(store: Store):
    batch = [make(i) for i in range(300)]
    assert store.write(batch) == batch
    assert store.write(batch) == []
    assert store.write(list(reversed(batch))) == []
    assert store.count() == 300
    assert_usage(store, batch, [])
    assert_usage(store, batch, ["request_model"])


def test_repeated_ids_within_a_batch_keep_the_first(store: Store):
    first = make(1)
    again = dataclasses.replace(first, input_tokens=999_999, total_tokens=999_999)
    batch = [first, make(2), again, make(3), make(2)]
    assert store.write(batch) == [first, make(2), make(3)]
    assert store.count() == 3
    assert store.get(first.record_id) == first
    assert_usage(store, [first, make(2), make(3)], ["user_id"])


def test_overlapping_batches_count_each_record_once(store: Store):
    records = [make(i) for i in range(1000)]
    returned: list[Record] = []
    for start in range(0, 1000, 150):  # batches of 300 overlapping by 150
        returned += store.write(records[start : start + 300])
    assert sorted(r.record_id for r in returned) == sorted(r.record_id for r in records)
    assert store.count() == 1000
    assert_usage(store, records, [])
    assert_usage(store, records, ["hour"])


def test_an_empty_batch_is_a_no_op(store: Store):
    assert store.write([]) == []
    assert store.count() == 0


# --- rollups and usage -------------------------------------------------------------------------------------------


def test_rollups_equal_sums_computed_from_the_records(store: Store):
    rnd = random.Random(5)
    records = [make(i, start_ns=T0 + rnd.randrange(3 * DAY)) for i in range(2500)]
    stream = records + rnd.sample(records, 600)  # retries mixed in
    rnd.shuffle(stream)
    for start in range(0, len(stream), 256):
        store.write(stream[start : start + 256])
    assert store.count() == 2500
    # Grouped by the whole rollup key, usage() is the rollup table itself.
    assert_usage(store, records, [*DIMENSIONS, "hour"])
    keys = store._query("SELECT COUNT(*) FROM completion_rollup_hourly", ())[0][0]  # type: ignore[attr-defined]
    assert keys == len(expected_usage(records, [*DIMENSIONS, "hour"]))
    for group_by in ([], ["day"], ["provider", "user_id"], ["feature", "department", "status", "error_type"]):
        assert_usage(store, records, group_by)


def test_usage_groups_and_time_ranges(store: Store):
    records = [
        make(1, start_ns=T0 + 10, request_model="a", user_id="u1"),
        make(2, start_ns=T0 + HOUR // 2, request_model="a", user_id="u2"),
        make(3, start_ns=T0 + HOUR, request_model="b", user_id=None),
        make(4, start_ns=T0 + DAY + 5 * HOUR, request_model="a", user_id="u1"),
        make(5, start_ns=T0 - 1, request_model="c", user_id="u3"),  # the last hour of the previous day
    ]
    store.write(records)
    rows = store.usage(["request_model", "user_id"], T0, T0 + 2 * DAY)
    assert [(r["request_model"], r["user_id"], r["requests"]) for r in rows] == [
        ("a", "u1", 2),
        ("a", "u2", 1),
        ("b", "", 1),  # a missing dimension groups as ''
    ]
    assert [(r["hour"], r["requests"]) for r in store.usage(["hour"], T0, T0 + 2 * DAY)] == [
        (T0, 2),
        (T0 + HOUR, 1),
        (T0 + DAY + 5 * HOUR, 1),
    ]
    assert [(r["day"], r["requests"]) for r in store.usage(["day"], T0 - DAY, T0 + 2 * DAY)] == [
        (T0 - DAY, 1),
        (T0, 3),
        (T0 + DAY, 1),
    ]
    assert store.usage([], T0 + HOUR, T0 + 2 * HOUR)[0]["requests"] == 1  # hour buckets starting in [start, end)
    empty = store.usage([], T0 + 10 * DAY, T0 + 11 * DAY)
    assert len(empty) == 1 and all(v == 0 for v in empty[0].values())
    assert store.usage(["user_id"], T0 + 10 * DAY, T0 + 11 * DAY) == []
    for group_by in GROUPS:
        assert_usage(store, records, [group_by])


@pytest.mark.parametrize("group_by", [["model"], ["user_id", "user_id"], ["hour; DROP TABLE completion_records"]])
def test_usage_rejects_unknown_groups(store: Store, group_by: list[str]):
    with pytest.raises(ValueError, match="group_by"):
        store.usage(group_by, T0, T0 + DAY)


# --- migrations --------------------------------------------------------------------------------------------------


def test_migrations_are_applied_once(store_url: str, monkeypatch):
    stores: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(open_store(store_url))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]  # four "processes" open a new database at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        stores.append(open_store(store_url))  # and once more later
        for s in stores:
            assert s.schema_versions() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # type: ignore[attr-defined]
        assert stores[0]._query("SELECT COUNT(*) FROM schema_migrations", ())[0][0] == 10  # type: ignore[attr-defined]

        extra = schema.Migration(
            1000,
            "test table",
            {d: ("CREATE TABLE IF NOT EXISTS migration_test (x INTEGER)",) for d in ("sqlite", "postgresql")},
        )
        monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, extra))
        stores.append(open_store(store_url))
        stores.append(open_store(store_url))
        assert stores[-1].schema_versions() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000]  # type: ignore[attr-defined]
        assert stores[-1]._query("SELECT COUNT(*) FROM migration_test", ())[0][0] == 0  # type: ignore[attr-defined]
    finally:
        for s in stores:
            s.close()


def test_migration_6_adds_units_and_keeps_the_rows_of_schema_5(store_url: str, monkeypatch):
    """Records written by schema 5 (no `units` column) read back unchanged, with no units, once migration 6 ran;
    records with units are written and read next to them."""
    old = [
        dataclasses.replace(full_record(), units={}, parent_span_id="", seen_by=[], params={}, dimensions={}),
        make(2),
        make(3, start_ns=T0 + 2 * HOUR),
    ]
    columns = [c for c in COLUMNS if c not in ("units", "parent_span_id", "seen_by", "params", "dimensions")]
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:5])
        m.setattr(postgres, "_STAGING", ())  # the staging tables of the current code copy the `units` column
        with open_store(store_url) as v5:
            assert isinstance(v5, SQLStore) and v5.schema_versions() == [1, 2, 3, 4, 5]
            p = v5.placeholder
            rows = [tuple(v for c, v in zip(COLUMNS, record_to_row(r), strict=True) if c in columns) for r in old]
            with v5._transaction() as tx:
                tx.many(
                    f"INSERT INTO completion_records ({', '.join(columns)}) VALUES ({', '.join([p] * len(columns))})",
                    rows,
                )

    with open_store(store_url) as store:
        assert isinstance(store, SQLStore) and store.schema_versions() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        assert [store.get(r.record_id) for r in old] == old
        new = dataclasses.replace(make(4), units={"input_characters": 1_234, "audio_seconds": 0.5})
        assert store.write([new, old[1]]) == [new]  # a stored old record is still recognised
        assert store.get(new.record_id) == new
        assert store.records_between(T0, T0 + DAY, 10) == sorted(
            [*old, new], key=lambda r: (r.start_time_ns, r.record_id)
        )


# --- concurrency -------------------------------------------------------------------------------------------------


def test_two_writers_with_the_same_ids_never_double_count(opener: Callable[[], Store]):
    records = [make(i) for i in range(3000)]
    batches = [records[start : start + 400] for start in range(0, 3000, 200)]  # every id in two batches
    returned: list[list[Record]] = [[], []]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        order = batches[:]
        random.Random(n).shuffle(order)
        try:
            store = opener()
            for batch in order:
                returned[n] += store.write(batch)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [r.record_id for r in returned[0] + returned[1]]
    assert len(ids) == len(set(ids)) == 3000
    store = opener()
    assert store.count() == 3000
    assert_usage(store, records, [])
    assert_usage(store, records, ["user_id", "hour"])


def test_reads_on_other_threads_while_writing(store: Store):
    records = [make(i) for i in range(4000)]
    done = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def reader() -> None:
        try:
            while not done.is_set():
                seen.append(store.count())
                store.usage(["request_model"], T0, T0 + DAY)
                store.records_between(T0, T0 + DAY, 50)
                store.get(records[0].record_id)
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for start in range(0, 4000, 200):
            store.write(records[start : start + 200])
    finally:
        done.set()
        for t in readers:
            t.join()
    assert errors == []
    assert store.count() == 4000 and len(seen) > 0


# --- failures ----------------------------------------------------------------------------------------------------


def test_a_failing_batch_stores_nothing(store: Store):
    stored = [make(i) for i in range(100)]
    store.write(stored)
    bad = [make(i) for i in range(100, 200)]
    bad[57] = dataclasses.replace(bad[57], provider=None)  # type: ignore[arg-type]  # NOT NULL violated mid-batch
    with pytest.raises(StoreError):
        store.write(bad)
    assert store.count() == 100
    assert store.get(bad[0].record_id) is None
    assert_usage(store, stored, ["hour"])
    good = [make(i) for i in range(100, 200)]
    assert store.write(good) == good  # the store still works
    assert_usage(store, stored + good, ["hour"])


def test_ping_and_close(store: Store):
    assert store.ping() is True
    store.close()
    assert store.ping() is False
    with pytest.raises(StoreError):
        store.write([make(1)])


def test_postgres_stopped_mid_write_then_restarted():
    server = new_pg_server()
    try:
        server.start()
        store = open_store(server.dsn)
        first = [make(i) for i in range(1000)]
        assert store.write(first) == first

        # Stop the server while a large write's transaction is open.
        big = [make(i) for i in range(1000, 61000)]
        outcome: list[object] = []
        writing = threading.Thread(target=lambda: outcome.append(_attempt(store.write, big)))
        writing.start()
        with psycopg.connect(server.dsn, autocommit=True, application_name="test-admin") as admin:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and writing.is_alive():
                in_flight = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'llmtally' "
                    "AND backend_xid IS NOT NULL"
                ).fetchone()
                if in_flight and in_flight[0]:
                    break
                time.sleep(0.002)
        server.stop()
        writing.join()
        assert isinstance(outcome[0], StoreUnavailable), outcome[0]

        # While it is down: a clear error, nothing stored, ping says so.
        with pytest.raises(StoreUnavailable):
            store.write(big[:10])
        assert store.ping() is False

        server.start()
        assert store.ping() is True
        assert store.count() == 1000  # nothing of the interrupted batch
        assert_usage(store, first, ["hour"])
        assert store.write(first + big[:5000]) == big[:5000]  # the client's retry
        assert store.count() == 6000
        assert_usage(store, first + big[:5000], ["user_id", "request_model"])
        store.close()
    finally:
        server.destroy()


def _attempt(fn: Callable[..., object], *args: object) -> object:
    try:
        return fn(*args)
    except BaseException as e:
        return e


def test_sqlite_full_database_rolls_back(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/audit.db")
    assert isinstance(store, SQLiteStore)
    try:
        first = [make(i) for i in range(200)]
        store.write(first)
        conn = store._writer
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages + 3}")  # the "disk" has room for 3 more pages
        batch = [make(i) for i in range(200, 2200)]
        with pytest.raises(StoreFull) as raised:
            store.write(batch)
        assert isinstance(raised.value, StoreUnavailable) and "full" in str(raised.value)
        assert not conn.in_transaction
        assert store.count() == 200
        assert store.get(batch[0].record_id) is None
        assert_usage(store, first, ["hour", "user_id"])
        conn.execute("PRAGMA max_page_count=1073741823")  # space freed: the retry succeeds
        assert store.write(batch) == batch
        assert_usage(store, first + batch, ["hour", "user_id"])
    finally:
        store.close()


def test_sqlite_locked_past_the_busy_timeout_is_unavailable(tmp_path):
    path = str(tmp_path / "audit.db")
    store = SQLiteStore(path, busy_timeout_s=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreUnavailable, match="locked"):
            store.write([make(1)])
        other.execute("ROLLBACK")
        assert store.write([make(1)]) == [make(1)]
    finally:
        other.close()
        store.close()


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (pgerrors.DiskFull, StoreFull),
        (pgerrors.AdminShutdown, StoreUnavailable),
        (pgerrors.DeadlockDetected, StoreUnavailable),
        (pgerrors.SerializationFailure, StoreUnavailable),
        (pgerrors.TooManyConnections, StoreUnavailable),
        (psycopg.OperationalError, StoreUnavailable),
        (pgerrors.NotNullViolation, RecordRejected),
    ],
)
def test_postgres_errors_say_whether_to_retry(error: type[psycopg.Error], raised: type[StoreError]):
    assert type(postgres_store_error(error("x"))) is raised


# --- URLs --------------------------------------------------------------------------------------------------------


def test_store_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///data/audit.db") as relative:
        relative.write([make(1)])
    assert (tmp_path / "data" / "audit.db").exists()
    with open_store(f"sqlite:///{tmp_path}/data/audit.db") as absolute:
        assert absolute.count() == 1
    memory = open_store("sqlite:///:memory:")
    try:
        assert memory.write([make(1), make(1)]) == [make(1)]
        assert memory.count() == 1 and memory.get(make(1).record_id) == make(1)
        assert memory.ping()
    finally:
        memory.close()
    for url in ("mysql://localhost/x", "sqlite:///", "sqlite://relative.db"):
        with pytest.raises(ValueError, match="unknown store URL"):
            open_store(url)
    with pytest.raises(StoreUnavailable):
        open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_listens_here")
