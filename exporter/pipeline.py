"""The write path: a bounded queue of normalised, priced batches and the one thread that stores them.

A batch is acknowledged only once the transaction holding it has committed: `submit` returns a future that the
writer resolves after `Store.write`. Batches waiting together are written in one transaction (group commit).
Past `max_queued` records, `submit` refuses at once (`Overloaded`): the client backs off and retries. A store
that fails fails the futures (`StoreError`): nothing is acknowledged that was not stored, and a retried batch is
de-duplicated by the store, so it is never counted twice.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future

from .metrics import Metrics
from .normalise import Record
from .store import Store


class Overloaded(Exception):
    """The queue is full; retry after a while."""


class Closed(Exception):
    """The receiver is shutting down."""


class Pipeline:
    def __init__(self, store: Store, metrics: Metrics, *, max_queued: int = 100_000, group_max: int = 8192) -> None:
        self.store = store
        self.metrics = metrics
        self.max_queued = max_queued
        self.group_max = group_max
        self._pending: deque[tuple[Sequence[Record], Future[int]]] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="llmtally-writer", daemon=True)

    def start(self) -> Pipeline:
        self._thread.start()
        return self

    def depth(self) -> int:
        return self._queued

    def submit(self, records: Sequence[Record]) -> Future[int]:
        """Queues `records`; the future gives how many of them were new once they are stored."""
        future: Future[int] = Future()
        if not records:
            future.set_result(0)
            return future
        with self._cond:
            if self._closing:
                raise Closed("the receiver is shutting down")
            if self._queued + len(records) > self.max_queued and self._queued:
                raise Overloaded(f"{self._queued} records are waiting to be stored")
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

    def _take(self) -> list[tuple[Sequence[Record], Future[int]]] | None:
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

    def _write(self, group: list[tuple[Sequence[Record], Future[int]]]) -> None:
        records = [record for batch, _ in group for record in batch]
        started = time.perf_counter()
        try:
            stored = self.store.write(records)
        except Exception as error:
            for _, future in group:
                future.set_exception(error)
        else:
            receiver = self.metrics.receiver
            receiver.write_latency.observe(time.perf_counter() - started)
            self.metrics.records.observe(stored)
            receiver.stored.inc(len(stored))
            receiver.duplicates.inc(len(records) - len(stored))
            new_ids = {record.record_id for record in stored}
            for batch, future in group:
                future.set_result(sum(1 for record in batch if record.record_id in new_ids))
        finally:
            with self._cond:
                self._queued -= len(records)
