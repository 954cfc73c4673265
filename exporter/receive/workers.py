"""Worker processes that decode, normalise and price export requests beside the receiver's one writer.

Python runs one thread at a time per process: with the decoding and pricing of every record in the receiving
process, that work and the writer share one core. `Workers` hands each request's body to a pool of processes
(started with `spawn`: the receiver has threads, which `fork` does not copy safely) and gets back the priced records,
pickled (`Prepared`: taken out only when the queue has room for them); the receiving process only stores them. A
worker that dies fails the requests it held as
`WorkerLost` (the client retries them: nothing of them was stored) and the pool is started again; a receiver that
dies takes its workers with it.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from ..normalise.otlp import Normalised
from ..normalise.record import Record, as_values
from ..price import Pricer, PricingConfig
from .decode import PROTOBUF
from .limits import return_freed_bodies
from .prepare import prepare, quiet_gc

PARENT_CHECK_SECONDS = 0.5
_pricer: Pricer | None = None


class WorkerLost(Exception):
    """A worker process ended while preparing the request: nothing of it was stored, retry it."""


def _start(pricing: Mapping[str, Any]) -> None:
    global _pricer
    _pricer = Pricer(PricingConfig.from_dict(pricing))
    quiet_gc()
    return_freed_bodies()
    threading.Thread(target=_exit_with, args=(os.getppid(),), name="llmtally-parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    """Ends this worker once the receiver that started it is gone (even killed with SIGKILL: no orphans)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


@dataclass(frozen=True)
class Prepared:
    """A request as a worker prepared it: `count` priced records, still pickled (tuples of their fields: a fraction
    of the records' size) until `normalised` takes them out, the rest of what normalise found, the metric points."""

    records: bytes
    count: int
    found: Normalised
    points: int

    def normalised(self) -> Normalised:
        return dataclasses.replace(self.found, records=[Record(*v) for v in pickle.loads(self.records)])


def _prepare(kind: str, body: bytes, peer: str | None, media: str) -> Prepared:
    """`prepare` in the worker."""
    assert _pricer is not None, "the worker was started without its pricer"
    found, points = prepare(kind, body, peer, _pricer, media)
    records = pickle.dumps([as_values(r) for r in found.records], pickle.HIGHEST_PROTOCOL)
    return Prepared(records, len(found.records), dataclasses.replace(found, records=[]), points)


class Workers:
    """A pool of `count` worker processes, each with its own `Pricer` built from the `pricing:` section."""

    def __init__(self, count: int, pricing: Mapping[str, Any]) -> None:
        if count < 1:
            raise ValueError("at least one worker process")
        self.count = count
        self._pricing = dict(pricing)
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.count, mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(self._pricing,)
        )

    def warm_up(self) -> None:
        """Starts every worker now (each imports the pricer and its catalog), not at the first request."""
        for future in [self._pool.submit(_prepare, "logs", b"", None, PROTOBUF) for _ in range(self.count)]:
            future.result()

    def prepare(self, kind: str, body: bytes, peer: str | None, media: str = PROTOBUF) -> Prepared:
        """`prepare.prepare` of a protobuf or JSON (`media`) body in a worker process; raises what it raises
        (Malformed), or WorkerLost."""
        pool = self._pool
        try:
            return pool.submit(_prepare, kind, body, peer, media).result()
        except BrokenProcessPool as error:
            with self._lock:
                if self._pool is pool:  # the first thread to see it starts the new pool
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
            raise WorkerLost("a worker process ended while preparing the request") from error

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
