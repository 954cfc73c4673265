"""The write path: a bounded queue of normalised, priced batches and the one thread that stores them.

A batch is acknowledged only once the transaction holding it has committed: `submit` returns a future that the
writer resolves after `Store.write`. Batches waiting together are written in one transaction (group commit).
Past `max_queued` records, `submit` refuses at once (`Overloaded`): the client backs off and retries.

A store that is unavailable (`StoreUnavailable`) fails the futures: nothing is acknowledged that was not stored,
and a retried batch is de-duplicated by the store, so it is never counted twice. Any other failure is permanent
(`RecordRejected`: a value the database refuses): the writer then halves the group and writes each half in its own
transaction, down to single records, so that every good record is stored once and only the records the database
refuses are rejected (at most 2n - 1 transactions for n records); each future learns which of its records were
rejected and why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from .metrics import Metrics
from .normalise import Record
from .store import Store, StoreError, StoreUnavailable

log = logging.getLogger("llmtally.pipeline")


class Overloaded(Exception):
    """The queue is full; retry after a while."""


class Closed(Exception):
    """The receiver is shutting down."""


@dataclass(frozen=True)
class Written:
    """What became of one submitted batch: how many of its records were new, and the (record id, reason) of each
    record the store refused for good (the others are stored)."""

    new: int = 0
    rejected: tuple[tuple[str, str], ...] = ()


@dataclass
class _Group:
    """The outcome of writing one group, built up write by write."""

    stored: list[Record] = field(default_factory=list)
    replaced: list[tuple[Record, Record]] = field(default_factory=list)  # (stored record, richer one in its place)
    settled: set[int] = field(default_factory=set)  # id() of the records stored or already there
    rejected: dict[int, str] = field(default_factory=dict)  # id() of a refused record -> why
    error: StoreUnavailable | None = None  # the store went away: what is not settled yet is to be retried


class Pipeline:
    def __init__(self, store: Store, metrics: Metrics, *, max_queued: int = 100_000, group_max: int = 8192) -> None:
        self.store = store
        self.metrics = metrics
        self.max_queued = max_queued
        self.group_max = group_max
        self._pending: deque[tuple[Sequence[Record], Future[Written]]] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closing = False
        self._unavailable: tuple[float, str] | None = None  # (monotonic time, why) of the last write that failed
        self._thread = threading.Thread(target=self._run, name="llmtally-writer", daemon=True)

    def start(self) -> Pipeline:
        self._thread.start()
        return self

    def depth(self) -> int:
        return self._queued

    def unavailable(self) -> tuple[float, str] | None:
        """When (time.monotonic()) and why the last write found the store unavailable, unless one has succeeded since
        (for /readyz)."""
        return self._unavailable

    def check_room(self, count: int) -> None:
        """Raises Overloaded unless `count` more records may be queued now (what `submit` checks): past `max_queued`
        records, unless the queue is empty."""
        with self._cond:
            if self._queued and self._queued + count > self.max_queued:
                raise Overloaded(f"{self._queued} records are waiting to be stored")

    def submit(self, records: Sequence[Record]) -> Future[Written]:
        """Queues `records`; the future gives how many of them were new and which were rejected once the others are
        stored, or fails with StoreUnavailable (retry the batch)."""
        future: Future[Written] = Future()
        if not records:
            future.set_result(Written())
            return future
        with self._cond:
            if self._closing:
                raise Closed("the receiver is shutting down")
            self.check_room(len(records))
            self._pending.append((records, future))
            self._queued += len(records)
            self._cond.notify()
        return future

    def close(self, timeout: float = 30.0) -> None:
        """Stops taking batches, stores every queued one, and stops the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _take(self) -> list[tuple[Sequence[Record], Future[Written]]] | None:
        with self._cond:
            while not self._pending and not self._closing:
                self._cond.wait()
            if not self._pending:
                return None
            group = [self._pending.popleft()]
            size = len(group[0][0])
            while self._pending and size + len(self._pending[0][0]) <= self.group_max:
                item = self._pending.popleft()
                group.append(item)
                size += len(item[0])
            return group

    def _run(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            self._write(group)

    def _write(self, group: list[tuple[Sequence[Record], Future[Written]]]) -> None:
        records = [record for batch, _ in group for record in batch]
        started = time.perf_counter()
        done = _Group()
        try:
            self._isolate(records, done)
            if done.error is not None:
                self._unavailable = (time.monotonic(), str(done.error))
            elif done.settled or done.rejected:
                self._unavailable = None
            receiver = self.metrics.receiver
            if done.settled:
                receiver.write_latency.observe(time.perf_counter() - started)
            stored = done.stored
            self.metrics.records.observe(stored)
            self.metrics.records.replace(done.replaced)
            receiver.stored.inc(len(stored))
            if stored:
                receiver.last_stored.set_to_current_time()
            receiver.duplicates.inc(len(done.settled) - len(stored))
            new_ids = {record.record_id for record in stored}
            for batch, future in group:
                if done.error is not None and any(
                    id(r) not in done.settled and id(r) not in done.rejected for r in batch
                ):
                    future.set_exception(done.error)
                    continue
                rejected = tuple((r.record_id, done.rejected[id(r)]) for r in batch if id(r) in done.rejected)
                future.set_result(Written(sum(1 for r in batch if r.record_id in new_ids), rejected))
        except Exception as error:  # a bug past the store: fail the batches rather than leave them waiting
            log.exception("the writer failed")
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
        finally:
            with self._cond:
                self._queued -= len(records)

    def _isolate(self, records: list[Record], done: _Group) -> None:
        """Writes `records` in one transaction; when the store refuses them for good, each half in its own, down to
        the single records it refuses. Stops at the first StoreUnavailable (kept in `done.error`)."""
        try:
            stored = self.store.write(records)
        except StoreUnavailable as error:
            done.error = error
            return
        except Exception as error:
            if not isinstance(error, StoreError):
                log.warning("the store raised %s (a bug: stores raise StoreError)", type(error).__name__)
            if len(records) == 1:
                log.warning("record %s rejected by the store: %s", records[0].record_id, error)
                done.rejected[id(records[0])] = f"record {records[0].record_id}: {error}"
                return
            middle = len(records) // 2
            self._isolate(records[:middle], done)
            if done.error is None:
                self._isolate(records[middle:], done)
            return
        done.stored += stored
        done.replaced += stored.replaced
        done.settled.update(id(r) for r in records)
