"""The PostgreSQL audit store (for scale, shared by several receivers): psycopg 3, set-based idempotent inserts."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from ..normalise.record import Record
from . import rollup, schema
from .columns import record_to_row
from .errors import StoreError, StoreFull, StoreUnavailable
from .sql import SQLStore, first_of_each_id

_MIGRATION_LOCK = 0x6C6C6D74616C6C79  # pg_advisory_xact_lock key ("llmtally")
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
    """The StoreError for a psycopg error: full disk, unreachable/shutting down, or anything else."""
    if isinstance(e, pgerrors.DiskFull | pgerrors.OutOfMemory | pgerrors.InsufficientResources):
        return StoreFull(f"PostgreSQL is out of space: {e}")
    if isinstance(e, psycopg.OperationalError | pgerrors.AdminShutdown | pgerrors.CannotConnectNow):
        return StoreUnavailable(f"PostgreSQL unavailable: {e}")
    return StoreError(f"PostgreSQL error: {e}")


class _Connection:
    """One lazily (re)opened connection and the lock that serialises its use."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def get(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The open connection; a new one when the last broke (the server restarted, the network failed)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = psycopg.connect(self.dsn, **_CONNECT_OPTIONS)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresStore(SQLStore):
    """Audit store in PostgreSQL. Several stores (processes) may write the same ids at once: each counts once."""

    placeholder = "%s"

    def __init__(self, dsn: str) -> None:
        self._writer = _Connection(dsn)
        self._reader = _Connection(dsn)
        insert = self._insert_sql()
        self._insert = f"{insert} ON CONFLICT (record_id) DO NOTHING RETURNING record_id"
        self._upsert = rollup.upsert_sql(self.placeholder)
        with self._writer.lock:
            try:
                self._migrate(self._writer.get())
            except psycopg.Error as e:
                self._writer.close()
                raise store_error(e) from e

    @staticmethod
    def _migrate(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
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

    def write(self, records: Sequence[Record]) -> list[Record]:
        """Store the records not stored yet, and their rollups, in one transaction; return them.

        Rows go in sorted by record_id and rollups by key, so concurrent writers lock in one order (no deadlocks);
        `ON CONFLICT DO NOTHING` waits for a concurrent insert of the same id and then skips it.
        """
        unique = first_of_each_id(records)
        if not unique:
            return []
        rows = sorted((record_to_row(r) for r in unique), key=lambda row: row[0])
        with self._writer.lock:
            try:
                conn = self._writer.get()
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(self._insert, rows, returning=True)
                    stored: set[str] = set()
                    while True:
                        stored.update(v for (v,) in cur.fetchall())
                        if not cur.nextset():
                            break
                    fresh = [r for r in unique if r.record_id in stored]
                    if fresh:
                        cur.executemany(self._upsert, rollup.aggregate(fresh))
            except psycopg.Error as e:  # rolled back; a broken connection is replaced by the next get()
                raise store_error(e) from e
        return fresh

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._reader.lock:
            try:
                return self._reader.get().execute(sql, params).fetchall()
            except psycopg.Error as e:
                raise store_error(e) from e

    def ping(self) -> bool:
        try:
            self._query("SELECT 1", ())
        except StoreError:
            return False
        return True

    def close(self) -> None:
        with self._writer.lock:
            self._writer.close()
        with self._reader.lock:
            self._reader.close()
