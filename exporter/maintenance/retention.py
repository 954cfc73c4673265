"""Retention: delete records (and their rollups) older than N days, or only their captured payloads.

The cut-off is a UTC midnight (rollups are per day, so they go with their records and every report stays exact);
the work runs one day per transaction, oldest first.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..store import Operation, Selection, Store, StoreError
from ..store.rollup import DAY_NS
from .days import days, floor_day


@dataclass(frozen=True)
class Plan:
    """What a cleanup would do: the records starting before `cutoff_ns`, one day at a time."""

    cutoff_ns: int
    payloads_only: bool
    days: tuple[tuple[int, int], ...]
    records: int  # records in the range (for payloads_only: those whose payloads would be dropped, at most)

    @property
    def selection(self) -> Selection:
        return Selection(self.days[0][0] if self.days else self.cutoff_ns, self.cutoff_ns)


def plan(store: Store, keep_days: int, *, payloads_only: bool = False, now_ns: int | None = None) -> Plan:
    """The cleanup that keeps the last `keep_days` whole UTC days (and today)."""
    if keep_days < 0:
        raise ValueError("--days must not be negative")
    now = time.time_ns() if now_ns is None else now_ns
    cutoff = floor_day(now) - keep_days * DAY_NS
    oldest = store.oldest_start_ns()
    if oldest is None or oldest >= cutoff:
        return Plan(cutoff, payloads_only, (), 0)
    ranges = tuple(days(floor_day(oldest), cutoff))
    return Plan(cutoff, payloads_only, ranges, store.count_matching(Selection(ranges[0][0], cutoff)))


def run(store: Store, todo: Plan, progress: Callable[[int], None] | None = None) -> int:
    """Carries out `todo`, calling `progress(records)` after each day; returns the records deleted (or cleared)."""
    done = 0
    for start, end in todo.days:
        n = store.drop_payloads_between(start, end) if todo.payloads_only else store.delete_between(start, end)
        done += n
        if progress is not None:
            progress(n)
    return done


class Scheduler:
    """`serve`'s retention: every `interval_s`, delete records older than `days` and payloads older than
    `payload_days` (either may be None), on its own thread."""

    def __init__(self, store: Store, days: int | None, payload_days: int | None, interval_s: float) -> None:
        self._store = store
        self._days = days
        self._payload_days = payload_days
        self._interval_s = max(interval_s, 1.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmtally-retention", daemon=True)

    def start(self) -> Scheduler:
        if self._days is not None or self._payload_days is not None:
            self._thread.start()
        return self

    @property
    def _arguments(self) -> dict[str, object]:
        """The operations log's arguments of a scheduled cleanup."""
        return {"days": self._days, "payload_days": self._payload_days, "schedule": True}

    def run_once(self) -> tuple[int, int]:
        """One pass: (records deleted, records whose payloads were dropped)."""
        deleted = cleared = 0
        if self._days is not None:
            deleted = run(self._store, plan(self._store, self._days))
        if self._payload_days is not None:
            cleared = run(self._store, plan(self._store, self._payload_days, payloads_only=True))
        if deleted or cleared:  # kept in the operations log when it changed something
            counts = {"records": deleted, "payloads": cleared}
            self._store.log_operation(Operation(time.time_ns(), "cleanup", "serve", self._arguments, "done", counts))
        return deleted, cleared

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                deleted, cleared = self.run_once()
                if deleted or cleared:
                    print(
                        f"llmtally serve: retention deleted {deleted} records, dropped payloads of {cleared}",
                        file=sys.stderr,
                        flush=True,
                    )
            except StoreError as error:  # tried again at the next interval
                print(f"llmtally serve: retention failed, will retry: {error}", file=sys.stderr, flush=True)
                failed = Operation(time.time_ns(), "cleanup", "serve", self._arguments, "failed", {}, str(error))
                with contextlib.suppress(StoreError):
                    self._store.log_operation(failed)
            self._stop.wait(self._interval_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
