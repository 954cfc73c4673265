"""What both SQL stores share: the statements and the read and maintenance methods; subclasses bring connections,
transactions and write()."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self

from ..normalise.record import Record
from . import forget, layers, oplog, rollup
from .calls import Plan, Stored
from .columns import COLUMN_LIST, row_to_record, to_json
from .errors import StoreError
from .mix import streamed_sql
from .record_usage import record_usage_sql
from .report_runs import ReportRuns
from .select import SORT_KEYS, BadCursor, Cursor, Selection, sort_value
from .statement_facts import statement_facts_sql
from .usage import usage_sql

RECORDS = rollup.RECORDS
_COST_UPDATE_COLUMNS = ("provider_cost_nusd", "customer_cost_nusd", "price_source", "priced", "events")


class _Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...


class Executor(Protocol):
    """What both drivers' write handles offer (a sqlite3 connection, a psycopg cursor)."""

    def execute(self, sql: Any, params: Any = ..., /) -> _Cursor: ...

    def executemany(self, sql: Any, params: Any, /) -> object: ...


class Transaction:
    """Statements inside one write transaction (committed when the store's context ends without an exception)."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._executor.execute(sql, params).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs one statement; returns the number of rows it changed."""
        return self._executor.execute(sql, params).rowcount

    def many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._executor.executemany(sql, params)


class SQLStore(ReportRuns, ABC):
    """The audit store over one SQL database (see `llmtally.exporter.store.Store` for the contract)."""

    placeholder: ClassVar[str]
    seq_column: ClassVar[str]  # grows with every insert: what a page's snapshot is measured in

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement, on a reading connection; raises StoreError."""

    @abstractmethod
    def _transaction(self, lock_rollups: bool = False) -> AbstractContextManager[Transaction]:
        """A write transaction on the writer connection (serialised with write()); `lock_rollups` keeps other
        writers from changing the rollups until it ends. Raises StoreError (rolled back)."""

    @abstractmethod
    def snapshot(self) -> int:
        """The `seq_column` value of the last record stored (0 when none)."""

    @abstractmethod
    def write(self, records: Sequence[Record]) -> Stored: ...

    def _take_emptied(self, tx: Transaction, plan: Plan) -> None:
        """Deletes the rollup rows that the records a plan took away left with no request."""
        if plan.removed:
            start, end = rollup.emptied_range(plan.removed)
            for r in rollup.ROLLUPS:
                tx.run(rollup.emptied_sql(r, self.placeholder), (start, end))

    @abstractmethod
    def close(self) -> None: ...

    def ping(self) -> bool:
        try:
            self._query("SELECT 1", ())
        except StoreError:
            return False
        return True

    def probe_write(self) -> None:
        # A real committed write on the writer's connection, that changes no value: the oldest migration's row.
        with self._transaction() as tx:
            tx.run(
                "UPDATE schema_migrations SET applied_at_ns = applied_at_ns "
                "WHERE version = (SELECT MIN(version) FROM schema_migrations)"
            )

    def count(self) -> int:
        return int(self._query(f"SELECT COUNT(*) FROM {RECORDS}", ())[0][0])

    def get(self, record_id: str) -> Record | None:
        rows = self._query(f"SELECT {COLUMN_LIST} FROM {RECORDS} WHERE record_id = {self.placeholder}", (record_id,))
        return row_to_record(rows[0]) if rows else None

    def records_between(self, start_ns: int, end_ns: int, limit: int = 1000) -> list[Record]:
        p = self.placeholder
        sql = (
            f"SELECT {COLUMN_LIST} FROM {RECORDS} WHERE start_time_ns >= {p} AND start_time_ns < {p} "
            f"ORDER BY start_time_ns, record_id LIMIT {p}"
        )
        return [row_to_record(row) for row in self._query(sql, (start_ns, end_ns, limit))]

    def usage(
        self,
        group_by: Sequence[str],
        start_ns: int,
        end_ns: int,
        filters: Mapping[str, str] | None = None,
        http_status: Sequence[int] = (),
    ) -> list[rollup.UsageRow]:
        sql, params, names = usage_sql(group_by, start_ns, end_ns, filters or {}, self.placeholder, http_status)
        return [dict(zip(names, row, strict=True)) for row in self._query(sql, params)]

    def record_usage(self, selections: Sequence[Selection], group_by: Sequence[str]) -> list[rollup.UsageRow]:
        sql, params, names = record_usage_sql(selections, group_by, self.placeholder)
        return [dict(zip(names, row, strict=True)) for row in self._query(sql, params)]

    def statement_facts(self, selections: Sequence[Selection], group_by: Sequence[str]) -> list[dict[str, Any]]:
        sql, params, names = statement_facts_sql(selections, group_by, self.placeholder)
        return [dict(zip(names, row, strict=True)) for row in self._query(sql, params)]

    def page(
        self,
        selection: Selection,
        limit: int,
        cursor: Cursor | None = None,
        *,
        newest_first: bool = True,
        sort: str = "time",
    ) -> tuple[list[Record], Cursor | None]:
        """Up to `limit` records of `selection` after `cursor` (from the start when None), in `sort` order (a
        SORT_KEYS name, then record_id) descending (`newest_first`) or ascending, and the cursor of the next page
        (None after the last)."""
        p = self.placeholder
        if cursor is not None and cursor.sort != sort:
            raise BadCursor(f"this cursor pages the request log sorted by {cursor.sort}, not by {sort}")
        snapshot = cursor.snapshot if cursor else self.snapshot()
        where, params = selection.where(p)
        where += f" AND {self.seq_column} <= {p}"
        params.append(snapshot)
        direction, compare = ("DESC", "<") if newest_first else ("ASC", ">")
        key = SORT_KEYS[sort]
        if cursor is not None:
            # The plain bound lets SQLite start its index scan at the cursor (the row value alone is only a filter).
            where += f" AND {key} {compare}= {p} AND ({key}, record_id) {compare} ({p}, {p})"
            params += [cursor.position, cursor.position, cursor.record_id]
        sql = (
            f"SELECT {COLUMN_LIST} FROM {RECORDS} WHERE {where} "
            f"ORDER BY {key} {direction}, record_id {direction} LIMIT {p}"
        )
        rows = self._query(sql, [*params, limit + 1])
        records = [row_to_record(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return records, None
        last = records[-1]
        return records, Cursor(snapshot, last.start_time_ns, last.record_id, sort, sort_value(last, sort))

    def iter_records(self, selection: Selection, chunk: int = 2000, *, newest_first: bool = False) -> Iterator[Record]:
        """Every record of `selection` as stored when the iteration starts, `chunk` rows per query."""
        records, cursor = self.page(selection, chunk, newest_first=newest_first)
        yield from records
        while cursor is not None:
            records, cursor = self.page(selection, chunk, cursor, newest_first=newest_first)
            yield from records

    def stream_mix(self, selection: Selection, newest: int) -> list[tuple[str, str, int, int]]:
        """(provider, request_model, requests, non-streamed requests) of the `newest` records of `selection`."""
        sql, params = streamed_sql(selection, self.placeholder, newest)
        return [(p or "", m or "", int(n), int(b or 0)) for p, m, n, b in self._query(sql, params)]

    def count_matching(self, selection: Selection) -> int:
        where, params = selection.where(self.placeholder)
        return int(self._query(f"SELECT COUNT(*) FROM {RECORDS} WHERE {where}", params)[0][0])

    def oldest_start_ns(self) -> int | None:
        """The start time of the oldest stored record."""
        value = self._query(f"SELECT MIN(start_time_ns) FROM {RECORDS}", ())[0][0]
        return None if value is None else int(value)

    def delete_between(self, start_ns: int, end_ns: int) -> int:
        """Deletes the records starting in [start_ns, end_ns) (whole UTC days) and their rollups, in one transaction;
        returns how many records went."""
        _check_days(start_ns, end_ns)
        p = self.placeholder
        with self._transaction(lock_rollups=True) as tx:
            deleted = tx.run(
                f"DELETE FROM {RECORDS} WHERE start_time_ns >= {p} AND start_time_ns < {p}", (start_ns, end_ns)
            )
            for r in rollup.ROLLUPS:
                tx.run(f"DELETE FROM {r.table} WHERE {r.bucket} >= {p} AND {r.bucket} < {p}", (start_ns, end_ns))
            layers.delete_between(tx, p, start_ns, end_ns)
        return deleted

    def drop_payloads_between(self, start_ns: int, end_ns: int) -> int:
        """Clears the captured prompts and completions of the records starting in [start_ns, end_ns), keeping
        everything else (tokens, costs); returns how many records had some."""
        p = self.placeholder
        sql = (
            f"UPDATE {RECORDS} SET input_messages = NULL, output_messages = NULL WHERE start_time_ns >= {p} "
            f"AND start_time_ns < {p} AND (input_messages IS NOT NULL OR output_messages IS NOT NULL)"
        )
        with self._transaction() as tx:
            return tx.run(sql, (start_ns, end_ns))

    def reprice_between(self, start_ns: int, end_ns: int, reprice: Callable[[Record], bool]) -> int:
        """Calls `reprice` on each record starting in [start_ns, end_ns) (within one UTC day); the records it says it
        changed are updated (costs, price source, priced, events) and the day's rollups recomputed from the records,
        all in one transaction. Returns how many records changed."""
        day = start_ns - start_ns % rollup.DAY_NS
        if end_ns > day + rollup.DAY_NS:
            raise ValueError("reprice_between covers at most one UTC day")
        p = self.placeholder
        with self._transaction(lock_rollups=True) as tx:
            rows = tx.rows(
                f"SELECT {COLUMN_LIST} FROM {RECORDS} WHERE start_time_ns >= {p} AND start_time_ns < {p}",
                (start_ns, end_ns),
            )
            changed = [r for r in map(row_to_record, rows) if reprice(r)]
            if not changed:
                return 0
            sets = ", ".join(f"{c} = {p}" for c in _COST_UPDATE_COLUMNS)
            tx.many(
                f"UPDATE {RECORDS} SET {sets} WHERE record_id = {p}",
                [
                    (
                        r.provider_cost_nusd,
                        r.customer_cost_nusd,
                        r.price_source,
                        r.priced,
                        to_json(r.events),
                        r.record_id,
                    )
                    for r in changed
                ],
            )
            for r in rollup.ROLLUPS:
                delete, insert = rollup.rebuild_sql(r, p)
                tx.run(delete, (day, day + rollup.DAY_NS))
                tx.run(insert, (day, day + rollup.DAY_NS))
        return len(changed)

    def forget_user(self, user: str, *, dry_run: bool = False) -> forget.Forgotten:
        """Erases `user` from the store (`forget.forget`) in one transaction; with `dry_run`, only says what
        would change."""
        if dry_run:
            return forget.summary(
                [row_to_record(row) for row in self._query(forget.select_sql(self.placeholder), (user,))]
            )
        with self._transaction(lock_rollups=True) as tx:
            return forget.forget(tx, self.placeholder, user)

    def log_operation(self, operation: oplog.Operation) -> int:
        """Appends `operation` to the operations log; returns its id."""
        with self._transaction() as tx:
            return oplog.append(tx, self.placeholder, operation)

    def operations(
        self, limit: int = 100, before_id: int | None = None, kind: str | None = None
    ) -> list[oplog.Operation]:
        """The operations log, newest first."""
        return oplog.read(self._query, self.placeholder, limit, before_id, kind)

    def records_after(self, after: int, limit: int, upto: int | None = None) -> list[tuple[int, Record]]:
        """Up to `limit` records stored at positions (`seq_column`, as `snapshot()`) in (after, upto], in position
        order, each with its position (the live feed's cursor: insertion order, not time)."""
        p = self.placeholder
        bound = "" if upto is None else f" AND {self.seq_column} <= {p}"
        sql = (
            f"SELECT {self.seq_column}, {COLUMN_LIST} FROM {RECORDS} WHERE {self.seq_column} > {p}{bound} "
            f"ORDER BY {self.seq_column} LIMIT {p}"
        )
        params = [after, *(() if upto is None else (upto,)), limit]
        return [(int(row[0]), row_to_record(row[1:])) for row in self._query(sql, params)]

    def last_positions(self, count: int) -> list[int]:
        """The positions of the last `count` records stored, highest first."""
        sql = f"SELECT {self.seq_column} FROM {RECORDS} ORDER BY {self.seq_column} DESC LIMIT {self.placeholder}"
        return [int(v) for (v,) in self._query(sql, (count,))]

    def schema_versions(self) -> list[int]:
        """The applied migration versions, in order."""
        return [int(v) for (v,) in self._query("SELECT version FROM schema_migrations ORDER BY version", ())]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _check_days(start_ns: int, end_ns: int) -> None:
    if start_ns % rollup.DAY_NS or end_ns % rollup.DAY_NS:
        raise ValueError("the range must start and end on UTC day boundaries (rollups are kept per day)")
