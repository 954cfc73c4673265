"""`serve`'s scheduled reports: on its own thread, each report of `reports:` is produced once its scheduled time has
passed and delivered, once across replicas on one database: a run (report, period) is claimed in `report_runs` with
a unique key (INSERT ... ON CONFLICT DO NOTHING), so only the process whose insert succeeded produces and delivers
it. A run missed while no receiver ran is made at the next start (the latest scheduled time only); a delivery that
failed every attempt is logged and the run tried again later (its successful deliveries are not repeated); a claim
left by a process that stopped mid-run is taken over. `apply` replaces the reports of the running scheduler."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Self

from ..api.params import USAGE_STATUSES, Filters
from ..budgets.periods import ns
from ..config import Config
from ..price import Pricer
from ..store import ReportRun, Store
from . import statement
from .config import ReportConfig, from_config
from .deliver import DeliveryError, Log, deliver
from .render import render
from .schedule import due_period

MAX_ATTEMPTS = 5  # runs of one report period whose deliveries failed, before it is left failed
RETRY_AFTER_S = 300.0  # a failed run is tried again this long after its last attempt
STALE_CLAIM_S = 900.0  # a claim not finished after this long (its process stopped) is taken over
TICK_S = 30.0  # how often the scheduler looks for due reports


def _log(message: str) -> None:
    print(f"llmtally serve: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Outcome:
    """A run this scheduler made: its key, status (delivered or failed) and error."""

    key: str
    status: str
    error: str | None = None


class ReportScheduler:
    """Runs `reports` on schedule over `store`, with `clock` (aware UTC datetimes) as the time; schedules and periods
    are read in `zone` (llmtally.yaml's `timezone:`)."""

    def __init__(
        self,
        store: Store,
        pricer: Pricer,
        reports: Sequence[ReportConfig] = (),
        *,
        clock: Callable[[], datetime] | None = None,
        tick_seconds: float = TICK_S,
        retry_after_seconds: float = RETRY_AFTER_S,
        backoff_seconds: float = 1.0,
        log: Log = _log,
        zone: tzinfo = UTC,
    ) -> None:
        self._store = store
        self._zone = zone
        self._pricer = pricer
        self._reports = tuple(reports)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._tick_s = tick_seconds
        self._retry_after_ns = int(retry_after_seconds * 1e9)
        self._backoff_s = backoff_seconds
        self._log = log
        self._lock = threading.Lock()  # one pass at a time
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmtally-reports", daemon=True)

    @property
    def reports(self) -> tuple[ReportConfig, ...]:
        return self._reports

    def apply(self, reports: Sequence[ReportConfig], zone: tzinfo | None = None) -> None:
        """Replaces the scheduled reports (and the time zone, when given) (a configuration reload; the next pass uses
        them, a pass under way finishes with the old ones) and looks for due ones at once. Never waits for a pass."""
        self._reports = tuple(reports)
        if zone is not None:
            self._zone = zone
        self._wake.set()

    def apply_config(self, config: Config) -> None:
        """`apply` with the `reports:` section of a loaded configuration; a bad section raises ConfigError and
        changes nothing."""
        self.apply(from_config(config))

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception as error:  # a store outage or a bug in one pass: logged, tried again at the next tick
                self._log(f"scheduled reports: {type(error).__name__}: {error}; will retry")
            self._wake.wait(self._tick_s)
            self._wake.clear()

    def run_due(self) -> list[Outcome]:
        """One pass: every report whose latest scheduled time has passed and whose run is not done (or is due a
        retry) is claimed, produced and delivered here unless another process claimed it."""
        with self._lock:
            outcomes = []
            for report in self._reports:  # the tuple of the pass's start, whatever apply() does meanwhile
                if self._stop.is_set():
                    break
                outcome = self._run(report)
                if outcome is not None:
                    outcomes.append(outcome)
            return outcomes

    def _claim(self, report: ReportConfig, now: datetime) -> ReportRun | None:
        """This process's claim on the report's due run, or None (done, not due a retry, or claimed elsewhere)."""
        _, span = due_period(report, now, self._zone)
        now_ns = ns(now)
        run = ReportRun(
            f"report:{report.name}:{span.name}",
            report.name,
            span.start_ns,
            span.end_ns,
            ",".join(report.by),
            "claimed",
            now_ns,
        )
        if self._store.claim_report_run(run):
            return run
        kept = self._store.report_run(run.key)
        if kept is None or kept.status == "delivered":
            return None
        waited = now_ns - kept.claimed_at_ns
        retry = kept.status == "failed" and kept.attempts < MAX_ATTEMPTS and waited >= self._retry_after_ns
        stale = kept.status == "claimed" and waited >= STALE_CLAIM_S * 1e9
        if (retry or stale) and self._store.reclaim_report_run(
            kept.key, kept.status, kept.attempts, kept.claimed_at_ns, now_ns
        ):
            return replace(kept, status="claimed", claimed_at_ns=now_ns)
        return None

    def _run(self, report: ReportConfig) -> Outcome | None:
        now = self._clock()
        run = self._claim(report, now)
        if run is None:
            return None
        fire, span = due_period(report, now, self._zone)
        filters = Filters.parse({**report.filters}, USAGE_STATUSES)
        body = statement.build(
            self._store, span, filters, report.by, self._pricer.fee_nusd, title=report.title, now_ns=ns(now)
        )
        files = {f"{report.name}-{span.name}.{fmt}": render(body, fmt) for fmt in report.formats}
        done = {t for t in run.delivered.split(",") if t}
        errors = []
        for target in report.targets:
            if target in done:
                continue
            try:
                deliver(report, target, body, files, self._log, self._backoff_s)
                done.add(target)
            except DeliveryError as error:
                errors.append(str(error))
        status = "failed" if errors else "delivered"
        attempts = run.attempts + 1
        self._store.finish_report_run(
            replace(
                run,
                status=status,
                generated_at_ns=ns(now),
                fingerprint=body["fingerprint"],
                attempts=attempts,
                error="; ".join(errors) or None,
                delivered=",".join(sorted(done)),
            )
        )
        if errors:
            more = "will retry" if attempts < MAX_ATTEMPTS else f"giving up after {attempts} runs"
            self._log(f"report {report.name} ({span.name}, due {fire.isoformat()}) failed: {'; '.join(errors)}; {more}")
        else:
            self._log(f"report {report.name} ({span.name}) delivered to {', '.join(report.targets)}")
        return Outcome(run.key, status, "; ".join(errors) or None)
