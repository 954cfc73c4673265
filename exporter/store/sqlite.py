"""The SQLite audit store (the default): stdlib sqlite3, WAL, one writer connection and one reader connection."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..normalise.record import Record
from . import calls, layers, rollup, schema
from .calls import Stored
from .columns import COLUMN_LIST, COLUMNS, record_to_row
from .errors import VALUE_ERRORS, RecordRejected, StoreError, StoreFull, StoreUnavailable
from .sql import RECORDS, SQLStore, Transaction

_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOTADB,
    sqlite3.SQLITE_CORRUPT,
}
# Less free space than this on the database's file system counts as a full disk: a write that fits in the WAL's
# reused pages can still succeed there, while every larger batch and every checkpoint fails.
FULL_BELOW_BYTES = 1 << 20
# A value the database refuses: a constraint (NOT NULL of a NaN), too big, the wrong type, out of range.
_REJECTED = {sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE}


def _primary_code(e: sqlite3.Error) -> int:
    return (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF  # an extended code's low byte is its primary code


def store_error(e: sqlite3.Error) -> StoreError:
    """The StoreError for a sqlite3 error, by its SQLite result code."""
    code = _primary_code(e)
    if code == sqlite3.SQLITE_FULL:
        return StoreFull(f"SQLite database is full: {e}")
    if code in _UNAVAILABLE:
        return StoreUnavailable(f"SQLite database unavailable: {e}")
    if any(f"NOT NULL constraint failed: {r.table}." in str(e) for r in rollup.ROLLUPS):  # the checked upsert
        return RecordRejected(f"a rollup sum would be out of the range of 64-bit integers ({e})")
    if code in _REJECTED or isinstance(e, (sqlite3.IntegrityError, sqlite3.DataError)):
        return RecordRejected(f"SQLite refused the record: {e}")
    return StoreError(f"SQLite error: {e}")


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on any error; SQLite errors as StoreError."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as e:
        raise store_error(e) from e


class _Checkpointer:
    """Copies the WAL into the database file on its own thread and connection after writes.

    A commit then never waits for a checkpoint's fsyncs, which overlap the next batches' work instead (at 1M rows
    this raised write throughput from ~20k to ~32k records/s on a 2-core machine).
    """

    PAUSE_S = 0.05  # between checkpoints: batches that commit meanwhile are checkpointed together

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmtally-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping.is_set():
                break
            self._wake.clear()
            # On failure: tried again after the next write; the writer's autocheckpoint is the backstop.
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._stopping.wait(self.PAUSE_S)
        self._conn.close()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join()


class SQLiteStore(SQLStore):
    """Audit store in one SQLite file (or `:memory:`). write() runs on one thread at a time; reads may run on others."""

    placeholder = "?"
    seq_column = "rowid"  # never VACUUMed by llmtally, so rowids only grow

    def __init__(self, path: str, *, busy_timeout_s: float = 10.0) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        memory = path == ":memory:"
        if not memory:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreUnavailable(f"cannot create the directory of {path}: {e}") from e
        self._insert = f"INSERT INTO {RECORDS} ({COLUMN_LIST}) VALUES ({', '.join(['?'] * len(COLUMNS))})"
        # SQLite's integer + overflows into a float: the upsert turns that into NULL, which NOT NULL refuses.
        self._upserts = {r.table: rollup.upsert_sql(r, self.placeholder, checked=True) for r in rollup.ROLLUPS}
        self._write_lock = threading.Lock()
        # An in-memory database exists only on its one connection: reads share it (and its lock).
        self._read_lock = self._write_lock if memory else threading.Lock()
        self._writer = self._connect()
        opened = [self._writer]
        try:
            self._migrate()
            self._reader = self._writer if memory else self._connect()
            opened.append(self._reader)
            self._checkpointer = None if memory else _Checkpointer(self._connect())
        except BaseException:
            for conn in opened:
                conn.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB
            conn.execute("PRAGMA mmap_size=268435456")  # 256 MiB
            conn.execute("PRAGMA temp_store=MEMORY")
            # The checkpointer thread keeps the WAL short; past 256 MiB (it fell behind) the writer checkpoints itself.
            conn.execute("PRAGMA wal_autocheckpoint=65536")
            conn.execute("PRAGMA journal_size_limit=67108864")
        except sqlite3.Error as e:
            raise store_error(e) from e
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL (persistent, so usually already done). The switch can fail as busy without waiting for
        the busy timeout when another connection is writing: retry it until the timeout."""
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() not in ("wal", "memory"):
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if _primary_code(e) != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(0.01)

    def _migrate(self) -> None:
        with _immediate(self._writer) as conn:
            conn.execute(schema.CREATE_MIGRATIONS_TABLE)
            applied = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            for m in schema.pending(applied):
                for statement in m.statements["sqlite"]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at_ns) VALUES (?, ?, ?)",
                    (m.version, m.name, time.time_ns()),
                )

    def write(self, records: Sequence[Record]) -> Stored:
        """Store the batch in one transaction: its records of calls not stored yet, the stored calls it makes richer
        (`calls.resolve`), their rollups; return what it stored."""
        if not records:
            return Stored()
        try:
            with self._transaction() as tx:
                stored, found = layers.load(tx, "?", records)
                plan = calls.resolve(records, stored, found)
                layers.apply(tx, "?", plan)
                if plan.new:
                    tx.many(self._insert, [record_to_row(r) for r in plan.new])
                for r, rows in rollup.write_rows(rollup.changes(plan.added, plan.removed)):
                    tx.many(self._upserts[r.table], rows)
                self._take_emptied(tx, plan)
        except VALUE_ERRORS as e:  # sqlite3 cannot bind it (an int past 64 bits, a lone surrogate): rolled back
            raise RecordRejected(f"SQLite cannot store a value of the record: {e}") from e
        return Stored(plan.new, plan.replaced)

    @contextlib.contextmanager
    def _transaction(self, lock_rollups: bool = False) -> Iterator[Transaction]:
        # BEGIN IMMEDIATE already keeps every other writer out until the end (lock_rollups needs nothing more).
        with self._write_lock, _immediate(self._writer) as conn:
            yield Transaction(conn)
        if self._checkpointer is not None:
            self._checkpointer.wake()

    def probe_write(self) -> None:
        if self.path != ":memory:":
            try:
                free = shutil.disk_usage(Path(self.path).resolve().parent).free
            except OSError as e:
                raise StoreUnavailable(f"cannot read the free space of the disk of {self.path}: {e}") from e
            if free < FULL_BELOW_BYTES:
                raise StoreFull(f"the disk of {self.path} is full ({free} bytes free)")
        super().probe_write()

    def snapshot(self) -> int:
        return int(self._query(f"SELECT COALESCE(MAX(rowid), 0) FROM {RECORDS}", ())[0][0])

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._read_lock:
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise store_error(e) from e

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._write_lock:
            if self._reader is not self._writer:
                with self._read_lock:
                    self._reader.close()
            self._writer.close()
