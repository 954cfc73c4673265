"""The audit store: every record once (idempotent by record_id), plus rollups kept in the same transaction.

`open_store(url)` opens (and migrates) SQLite or PostgreSQL behind one `Store` interface:

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (SQLAlchemy's form), ``sqlite:///:memory:``;
- ``postgresql://user:password@host:port/db?sslmode=...`` (or ``postgres://``): a libpq connection URI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from ..normalise.record import Record
from .calls import Stored
from .errors import RecordRejected, StoreError, StoreFull, StoreUnavailable
from .forget import Forgotten
from .oplog import Operation
from .report_runs import ReportRun
from .rollup import UsageRow
from .select import BadCursor, Cursor, Selection
from .usage import GROUPS

__all__ = [
    "GROUPS",
    "BadCursor",
    "Cursor",
    "Forgotten",
    "Operation",
    "RecordRejected",
    "ReportRun",
    "Selection",
    "Store",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "Stored",
    "UsageRow",
    "open_store",
]

_SQLITE = "sqlite:///"


class Store(Protocol):
    """What the receiver and the query API use. write() runs on one writer thread; reads may run on any thread."""

    def write(self, records: Sequence[Record]) -> Stored:
        """Store a batch in one transaction, one record per LLM call (`calls`: a record that is another layer of a
        call already stored, or earlier in the batch, is not stored again; a richer one replaces the call's record),
        and return the records of the calls newly stored (`Stored`, a list, with the replacements beside); rollups
        change by exactly those records and replacements. Raises StoreError with nothing stored:
        StoreUnavailable when retrying later may succeed, RecordRejected when a value of the batch can never be
        stored (never a bare driver or Python exception)."""
        ...

    def count(self) -> int:
        """How many records are stored."""
        ...

    def get(self, record_id: str) -> Record | None:
        """The stored record with this id, if any."""
        ...

    def usage(
        self,
        group_by: Sequence[str],
        start_ns: int,
        end_ns: int,
        filters: Mapping[str, str] | None = None,
        http_status: Sequence[int] = (),
    ) -> list[UsageRow]:
        """Sums over the records starting in [start_ns, end_ns) that match `filters` (rollup dimension -> value,
        '' for none), one dict per group: the `group_by` values (names from `GROUPS`; "hour"/"day" as bucket start
        ns, UTC) then the sums. No group_by: one row of totals. Read from the narrowest rollup family that holds the
        groups and filters (exact for any bounds); with `http_status` (HTTP codes, any of them), from the records.
        Raises ValueError for other names."""
        ...

    def record_usage(self, selections: Sequence[Selection], group_by: Sequence[str]) -> list[UsageRow]:
        """`usage`'s sums read from the records matching any of `selections`, grouped by rollup dimensions, hour, day
        or `dim.<key>` (a custom dimension): for the groups and filters the rollups do not key."""
        ...

    def statement_facts(self, selections: Sequence[Selection], group_by: Sequence[str]) -> list[dict[str, Any]]:
        """Per group (as `record_usage`) and price used (provider, models, price source, priced) of the records
        matching any of `selections`: requests, those charged, those repriced (`statement_facts.FACTS`)."""
        ...

    def page(
        self,
        selection: Selection,
        limit: int,
        cursor: Cursor | None = None,
        *,
        newest_first: bool = True,
        sort: str = "time",
    ) -> tuple[list[Record], Cursor | None]:
        """Up to `limit` records of `selection` after `cursor`, and the next page's cursor (None after the last),
        ordered by `sort` (a SORT_KEYS name, then record_id), descending when `newest_first`.
        Pages are taken among the records stored when the first page was read: none repeats, none is skipped."""
        ...

    def iter_records(self, selection: Selection, chunk: int = 2000, *, newest_first: bool = False) -> Iterator[Record]:
        """Every record of `selection`, `chunk` per query (constant memory)."""
        ...

    def count_matching(self, selection: Selection) -> int: ...

    def stream_mix(self, selection: Selection, newest: int) -> list[tuple[str, str, int, int]]:
        """(provider, request_model, requests, non-streamed requests) of the `newest` records of `selection`, read
        from the records (the rollups do not keep how a request was sent)."""
        ...

    def snapshot(self) -> int:
        """A position that grows with every stored record (what a page cursor is bounded by)."""
        ...

    def oldest_start_ns(self) -> int | None: ...

    def delete_between(self, start_ns: int, end_ns: int) -> int:
        """Deletes the records of [start_ns, end_ns) (whole UTC days) and their rollups in one transaction."""
        ...

    def drop_payloads_between(self, start_ns: int, end_ns: int) -> int:
        """Clears captured prompts and completions in [start_ns, end_ns), keeping the rest."""
        ...

    def reprice_between(self, start_ns: int, end_ns: int, reprice: Callable[[Record], bool]) -> int:
        """Applies `reprice` to the records of [start_ns, end_ns) (within one UTC day) and stores those it changed,
        with the day's rollups recomputed, in one transaction."""
        ...

    def records_after(self, after: int, limit: int, upto: int | None = None) -> list[tuple[int, Record]]:
        """Up to `limit` records at positions (as `snapshot()`) in (after, upto], in position order, with them."""
        ...

    def last_positions(self, count: int) -> list[int]:
        """The positions of the last `count` records stored, highest first."""
        ...

    def forget_user(self, user: str, *, dry_run: bool = False) -> Forgotten:
        """Erases the user from their records (id, payloads, source IP, error messages): the records stay,
        anonymous, so every total and rollup keeps their share, under no user."""
        ...

    def log_operation(self, operation: Operation) -> int:
        """Appends to the operations log; returns the entry's id."""
        ...

    def operations(self, limit: int = 100, before_id: int | None = None, kind: str | None = None) -> list[Operation]:
        """The operations log, newest first."""
        ...

    def records_between(self, start_ns: int, end_ns: int, limit: int = 1000) -> list[Record]:
        """Up to `limit` records starting in [start_ns, end_ns), oldest first."""
        ...

    def ping(self) -> bool:
        """Whether the database answers."""
        ...

    def probe_write(self) -> None:
        """Commits a write that changes nothing (for /readyz); raises StoreError (StoreFull, StoreUnavailable) when
        the store takes no writes now."""
        ...

    def close(self) -> None: ...

    # Kept statements and scheduled report runs (`report_runs.py`).
    def claim_report_run(self, run: ReportRun) -> bool: ...

    def reclaim_report_run(self, key: str, status: str, attempts: int, claimed_at_ns: int, now_ns: int) -> bool: ...

    def finish_report_run(self, run: ReportRun) -> None: ...

    def report_run(self, key: str) -> ReportRun | None: ...

    def report_runs(self, name: str) -> list[ReportRun]: ...

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
