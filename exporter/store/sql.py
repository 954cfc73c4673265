"""What both SQL stores share: the statements and the read methods; subclasses bring connections and write()."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

from ..normalise.record import Record
from . import rollup
from .columns import COLUMN_LIST, row_to_record
from .errors import StoreError

RECORDS = "completion_records"


def first_of_each_id(records: Sequence[Record]) -> list[Record]:
    """The records without later repeats of an id, in order."""
    seen: set[str] = set()
    unique = []
    for r in records:
        if r.record_id not in seen:
            seen.add(r.record_id)
            unique.append(r)
    return unique


class SQLStore(ABC):
    """The audit store over one SQL database (see `llmtally.exporter.store.Store` for the contract)."""

    placeholder: ClassVar[str]

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement, on a reading connection; raises StoreError."""

    @abstractmethod
    def write(self, records: Sequence[Record]) -> list[Record]: ...

    @abstractmethod
    def close(self) -> None: ...

    def ping(self) -> bool:
        try:
            self._query("SELECT 1", ())
        except StoreError:
            return False
        return True

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

    def usage(self, group_by: Sequence[str], start_ns: int, end_ns: int) -> list[rollup.UsageRow]:
        sql, names = rollup.usage_sql(group_by, self.placeholder)
        return [dict(zip(names, row, strict=True)) for row in self._query(sql, (start_ns, end_ns))]

    def schema_versions(self) -> list[int]:
        """The applied migration versions, in order."""
        return [int(v) for (v,) in self._query("SELECT version FROM schema_migrations ORDER BY version", ())]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
