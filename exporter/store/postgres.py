"""The PostgreSQL audit store (for scale, shared by several receivers): psycopg 3, set-based idempotent writes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from ..normalise.record import Record
from . import calls, layers, rollup, schema
from .calls import Stored
from .columns import COLUMN_LIST, record_to_row
from .errors import VALUE_ERRORS, RecordRejected, StoreError, StoreFull, StoreUnavailable
from .sql import RECORDS, SQLStore, Transaction

_MIGRATION_LOCK = 0x6C6C6D74616C6C79  # pg_advisory_xact_lock key ("llmtally")
_TRANSIENT_CLASSES = {"08", "40", "53", "57", "58"}
_REJECTED_CLASSES = {"22", "23"}
_READ_ONLY = "25006"
_CONNECT_OPTIONS: dict[str, Any] = {
    "autocommit": True,  # transactions are explicit (conn.transaction()); reads leave no open transaction
    "application_name": "llmtally",
    "connect_timeout": 5,
    # Notice a server or network gone silent instead of waiting for it forever.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def store_error(e: psycopg.Error) -> StoreError:
    """The StoreError for a psycopg error, by SQLSTATE: full disk, transient (retry later), or this batch's fault."""
    state = e.sqlstate or ""
    if state == "53100":  # disk_full
        return StoreFull(f"PostgreSQL is out of disk space: {e}")
    # Connection lost (08), deadlock/serialization (40), resources (53), shutdown/cancel (57), I/O error (58), and a
    # server that takes no writes now (25006: a read-only standby after a failover, default_transaction_read_only).
    if isinstance(e, psycopg.OperationalError) or state[:2] in _TRANSIENT_CLASSES or state == _READ_ONLY:
        return StoreUnavailable(f"PostgreSQL unavailable: {e}")
    # Data exceptions (22: a number out of range, text it cannot hold) and integrity violations (23).
    if isinstance(e, (psycopg.DataError, psycopg.IntegrityError)) or state[:2] in _REJECTED_CLASSES:
        return RecordRejected(f"PostgreSQL refused the record: {e}")
    return StoreError(f"PostgreSQL error: {e}")


_STAGING = (  # per-connection tables that COPY fills, emptied at each commit
    f"CREATE TEMP TABLE incoming_records ON COMMIT DELETE ROWS AS SELECT {COLUMN_LIST} FROM {RECORDS} WITH NO DATA",
    f"CREATE TEMP TABLE incoming_rollup (LIKE {rollup.HOURLY.table}) ON COMMIT DELETE ROWS",
)
_COPY_RECORDS = f"COPY incoming_records ({COLUMN_LIST}) FROM STDIN"
# In record_id order, so that concurrent writers lock ids in one order (no deadlocks). The call locks already keep
# two writers from inserting one id: a conflict here would be a bug, and the batch is retried.
_INSERT_NEW = (
    f"INSERT INTO {RECORDS} ({COLUMN_LIST}) SELECT {COLUMN_LIST} FROM incoming_records ORDER BY record_id "
    "ON CONFLICT (record_id) DO NOTHING RETURNING record_id"
)
# Each key as a 64-bit hash (a collision only makes two writers wait for each other), in one order.
_LOCK_CALLS = (
    "INSERT INTO completion_call_locks (key) SELECT DISTINCT hashtextextended(k, 0) FROM unnest(%s::text[]) AS k "
    "ORDER BY 1 ON CONFLICT DO NOTHING"
)
_UNLOCK_CALLS = (
    "DELETE FROM completion_call_locks WHERE key IN (SELECT hashtextextended(k, 0) FROM unnest(%s::text[]) AS k)"
)
_RESOLVE_ROUNDS = 5
# COPY one full hourly row per key (aggregated in Python); then, in one round trip, add them to each rollup table
# (summed in SQL into the table's buckets and key) in key order, for the same reason.
_COPY_ROLLUP = f"COPY incoming_rollup ({', '.join((*rollup.KEY, *rollup.SUMS))}) FROM STDIN"
_UPSERT_ROLLUPS = "; ".join(
    rollup.upsert_sql(r, "%s", source=f"({rollup.derived_sql(r, 'incoming_rollup')}) AS incoming")
    for r in rollup.ROLLUPS
)
_LOCK_ROLLUPS = f"LOCK TABLE {', '.join(r.table for r in rollup.ROLLUPS)} IN EXCLUSIVE MODE"

Connection = psycopg.Connection[tuple[Any, ...]]


class _Connection:
    """One lazily (re)opened connection, the lock that serialises its use, and its per-connection set-up."""

    def __init__(self, dsn: str, setup: tuple[str, ...] = ()) -> None:
        self.dsn = dsn
        self.setup = setup
        self.lock = threading.Lock()
        self.closed = False
        self._conn: Connection | None = None

    def get(self) -> Connection:
        """The open connection; a new one when the last broke (the server restarted, the network failed)."""
        if self.closed:
            raise StoreError("the store is closed")
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop()
            conn = psycopg.connect(self.dsn, **_CONNECT_OPTIONS)
            try:
                for statement in self.setup:
                    conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self.closed = True
        self._drop()


class PostgresStore(SQLStore):
    """Audit store in PostgreSQL. Several stores (processes) may write the same ids at once: each counts once."""

    placeholder = "%s"
    seq_column = "seq"

    def __init__(self, dsn: str) -> None:
        try:
            with psycopg.connect(dsn, **_CONNECT_OPTIONS) as conn:
                self._migrate(conn)
        except psycopg.Error as e:
            raise store_error(e) from e
        self._writer = _Connection(dsn, _STAGING)
        self._reader = _Connection(dsn)

    @staticmethod
    def _migrate(conn: Connection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(schema.CREATE_MIGRATIONS_TABLE)
            applied = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            for m in schema.pending(applied):
                for statement in m.statements["postgresql"]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at_ns) VALUES (%s, %s, %s)",
                    (m.version, m.name, time.time_ns()),
                )

    def write(self, records: Sequence[Record]) -> Stored:
        """Store the batch in one transaction: its records of calls not stored yet, the stored calls it makes richer
        (`calls.resolve`), their rollups; return what it stored.

        Concurrent writers (other replicas) of layers of one call are serialised by the database: each first inserts
        the batch's `calls.lock_keys` into `completion_call_locks` (a unique key: a second writer of one waits for
        the first to end; both delete theirs before committing), then locks the rows of the stored calls it joins
        (`FOR UPDATE`) and resolves again if a writer changed them meanwhile. New records are COPYed into a staging
        table and inserted set-based, their rollups likewise.
        """
        if not records:
            return Stored()
        with self._writer.lock:
            try:
                conn = self._writer.get()
                with conn.transaction(), conn.cursor() as cur:
                    tx = Transaction(cur)
                    keys = calls.lock_keys(records)
                    cur.execute(_LOCK_CALLS, (keys,))
                    plan = self._resolve(tx, records)
                    layers.apply(tx, "%s", plan)
                    if plan.new:
                        with cur.copy(_COPY_RECORDS) as copy:
                            for r in plan.new:
                                copy.write_row(record_to_row(r))
                        if len(cur.execute(_INSERT_NEW).fetchall()) != len(plan.new):
                            raise StoreUnavailable("another writer stored a record of this batch meanwhile: retry")
                    changes = rollup.changes(plan.added, plan.removed)
                    if changes:
                        with cur.copy(_COPY_ROLLUP) as copy:
                            for row in changes:
                                copy.write_row(row)
                        cur.execute(_UPSERT_ROLLUPS)
                    self._take_emptied(tx, plan)
                    cur.execute(_UNLOCK_CALLS, (keys,))
            except psycopg.Error as e:  # rolled back; a broken connection is replaced by the next get()
                raise store_error(e) from e
            except VALUE_ERRORS as e:  # psycopg cannot send a value (text it cannot encode): rolled back
                raise RecordRejected(f"PostgreSQL cannot take a value of the record: {e}") from e
        return Stored(plan.new, plan.replaced)

    @staticmethod
    def _resolve(tx: Transaction, records: Sequence[Record]) -> calls.Plan:
        """The batch's plan, from the stored calls it joins as they are once their rows are locked."""
        for _ in range(_RESOLVE_ROUNDS):
            stored, found = layers.load(tx, "%s", records)
            plan = calls.resolve(records, stored, found)
            read = sorted(plan.rows, key=lambda r: r.record_id)
            if layers.current(tx, "%s", read) == read:
                return plan
        raise StoreUnavailable("other writers kept changing the calls of this batch: retry")

    @contextlib.contextmanager
    def _transaction(self, lock_rollups: bool = False) -> Iterator[Transaction]:
        with self._writer.lock:
            try:
                conn = self._writer.get()
                with conn.transaction(), conn.cursor() as cur:
                    if lock_rollups:
                        # Receivers add to the rollups after inserting their records: holding the rollups until
                        # commit means a concurrent batch is either wholly seen here or adds to what this leaves.
                        cur.execute(_LOCK_ROLLUPS)
                    yield Transaction(cur)
            except psycopg.Error as e:
                raise store_error(e) from e

    def snapshot(self) -> int:
        sql = f"SELECT pg_sequence_last_value(pg_get_serial_sequence('{RECORDS}', 'seq')::regclass)"
        value = self._query(sql, ())[0][0]
        return 0 if value is None else int(value)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._reader.lock:
            try:
                return self._reader.get().execute(sql, params).fetchall()
            except psycopg.Error as e:
                raise store_error(e) from e

    def close(self) -> None:
        with self._writer.lock:
            self._writer.close()
        with self._reader.lock:
            self._reader.close()
