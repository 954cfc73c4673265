"""The audit store: every record once (idempotent by record_id), plus hourly rollups kept in the same transaction.

`open_store(url)` opens (and migrates) SQLite or PostgreSQL behind one `Store` interface:

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (SQLAlchemy's form), ``sqlite:///:memory:``;
- ``postgresql://user:password@host:port/db?sslmode=...`` (or ``postgres://``): a libpq connection URI.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

from ..normalise.record import Record
from .errors import StoreError, StoreFull, StoreUnavailable
from .rollup import GROUPS, UsageRow

__all__ = ["GROUPS", "Store", "StoreError", "StoreFull", "StoreUnavailable", "UsageRow", "open_store"]

_SQLITE = "sqlite:///"


class Store(Protocol):
    """What the receiver and the query API use. write() runs on one writer thread; reads may run on any thread."""

    def write(self, records: Sequence[Record]) -> list[Record]:
        """Store a batch in one transaction and return exactly the records newly stored (ids not stored before and
        not repeated earlier in the batch); rollups grow by those only. Raises StoreError with nothing stored."""
        ...

    def count(self) -> int:
        """How many records are stored."""
        ...

    def get(self, record_id: str) -> Record | None:
        """The stored record with this id, if any."""
        ...

    def usage(self, group_by: Sequence[str], start_ns: int, end_ns: int) -> list[UsageRow]:
        """Rollup sums of the hours starting in [start_ns, end_ns) (exact for hour-aligned bounds), one dict per
        group: the `group_by` values (names from `GROUPS`; "hour"/"day" as bucket start ns, UTC) then the sums.
        No group_by: one row of totals. Raises ValueError for other names."""
        ...

    def records_between(self, start_ns: int, end_ns: int, limit: int = 1000) -> list[Record]:
        """Up to `limit` records starting in [start_ns, end_ns), oldest first."""
        ...

    def ping(self) -> bool:
        """Whether the database answers (for /readyz)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Closes the store."""
        ...


def open_store(url: str) -> Store:
    """Open the store at `url`, applying pending schema migrations. Raises StoreError (StoreUnavailable when the
    database cannot be reached) or ValueError for an unknown URL scheme."""
    if url.startswith(_SQLITE) and len(url) > len(_SQLITE):
        from .sqlite import SQLiteStore

        return SQLiteStore(url[len(_SQLITE) :])
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unknown store URL {url!r}: use sqlite:///path.db or postgresql://...")
