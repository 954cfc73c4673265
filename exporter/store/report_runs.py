"""Kept statements and scheduled report runs (`report_runs`, migration 9): each produced statement's fingerprint
and figures, and a claim per scheduled run, so that replicas on one database deliver each run once."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .sql import Transaction

TABLE = "report_runs"
_COLUMNS = (
    "run_key",
    "name",
    "period_start_ns",
    "period_end_ns",
    "grouping",
    "status",
    "claimed_at_ns",
    "generated_at_ns",
    "fingerprint",
    "figures",
    "attempts",
    "error",
    "delivered",
)

# Migration 9 (both dialects).
MIGRATION = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    run_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    period_start_ns BIGINT NOT NULL,
    period_end_ns BIGINT NOT NULL,
    grouping TEXT NOT NULL,
    status TEXT NOT NULL,
    claimed_at_ns BIGINT NOT NULL,
    generated_at_ns BIGINT,
    fingerprint TEXT,
    figures TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    delivered TEXT NOT NULL DEFAULT ''
)""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_name ON {TABLE} (name, period_start_ns)",
)


@dataclass(frozen=True)
class ReportRun:
    """One kept statement or scheduled run. `key` is unique: a statement's identity (period, grouping, filters) or a
    scheduled report's name and period. status: claimed (being produced), kept (a statement's reference figures),
    delivered, failed (delivery failed `attempts` times; `error` says why)."""

    key: str
    name: str
    period_start_ns: int
    period_end_ns: int
    grouping: str
    status: str
    claimed_at_ns: int
    generated_at_ns: int | None = None
    fingerprint: str | None = None
    figures: str | None = None  # JSON
    attempts: int = 0
    error: str | None = None
    delivered: str = ""  # the deliveries done, comma-separated (a retried run repeats only the others)


class ReportRuns:
    """The `report_runs` methods of the SQL stores (mixed into `SQLStore`)."""

    placeholder: ClassVar[str]

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _transaction(self, lock_rollups: bool = False) -> AbstractContextManager[Transaction]:
        raise NotImplementedError

    def claim_report_run(self, run: ReportRun) -> bool:
        """Inserts `run` unless a run with its key exists (INSERT ... ON CONFLICT DO NOTHING): True when this call
        inserted it (the caller owns the run), False when another process (or an earlier run) did."""
        p = self.placeholder
        values = (
            run.key,
            run.name,
            run.period_start_ns,
            run.period_end_ns,
            run.grouping,
            run.status,
            run.claimed_at_ns,
            run.generated_at_ns,
            run.fingerprint,
            run.figures,
            run.attempts,
            run.error,
            run.delivered,
        )
        sql = (
            f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES ({', '.join([p] * len(_COLUMNS))}) "
            "ON CONFLICT (run_key) DO NOTHING"
        )
        with self._transaction() as tx:
            return tx.run(sql, values) == 1

    def reclaim_report_run(self, key: str, status: str, attempts: int, claimed_at_ns: int, now_ns: int) -> bool:
        """Takes over the run `key` if it is still as read (status, attempts and claim time): True for one caller
        only (a failed delivery retried, or a claim left behind by a process that stopped)."""
        p = self.placeholder
        sql = (
            f"UPDATE {TABLE} SET status = 'claimed', claimed_at_ns = {p} "
            f"WHERE run_key = {p} AND status = {p} AND attempts = {p} AND claimed_at_ns = {p}"
        )
        with self._transaction() as tx:
            return tx.run(sql, (now_ns, key, status, attempts, claimed_at_ns)) == 1

    def finish_report_run(self, run: ReportRun) -> None:
        """Stores the outcome of a claimed run: status, generated time, fingerprint, figures, attempts, error, the
        deliveries done."""
        p = self.placeholder
        sql = (
            f"UPDATE {TABLE} SET status = {p}, generated_at_ns = {p}, fingerprint = {p}, figures = {p}, "
            f"attempts = {p}, error = {p}, delivered = {p} WHERE run_key = {p}"
        )
        values = (
            run.status,
            run.generated_at_ns,
            run.fingerprint,
            run.figures,
            run.attempts,
            run.error,
            run.delivered,
            run.key,
        )
        with self._transaction() as tx:
            tx.run(sql, values)

    def report_run(self, key: str) -> ReportRun | None:
        """The run with this key, if any."""
        rows = self._query(f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} WHERE run_key = {self.placeholder}", (key,))
        return ReportRun(*rows[0]) if rows else None

    def report_runs(self, name: str) -> list[ReportRun]:
        """The runs of a scheduled report (or of statements of this name), oldest period first."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} WHERE name = {self.placeholder} ORDER BY period_start_ns"
        return [ReportRun(*row) for row in self._query(sql, (name,))]
