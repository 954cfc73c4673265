"""`/readyz`: whether the receiver can store what it is sent now, judged by writes (not only a read ping).

Not ready while:
- the write queue is full;
- the last write of records found the store unavailable (down, locked, out of disk) and `hold_seconds` (the
  Retry-After given to clients) have not passed since, unless a write succeeded meanwhile;
- the store refuses a probe write (a committed write that changes nothing; for SQLite also a disk with less than
  1 MiB free).

Once `hold_seconds` have passed the probe alone decides again, so a receiver taken out of rotation comes back by
itself once the store takes writes, and goes out again at the next failed write while it does not.
"""

from __future__ import annotations

import time

from .pipeline import Pipeline
from .store import Store, StoreError


class Readiness:
    def __init__(self, pipeline: Pipeline, store: Store, *, queue_records: int, hold_seconds: float) -> None:
        self.pipeline = pipeline
        self.store = store
        self.queue_records = queue_records
        self.hold_seconds = hold_seconds

    def check(self) -> str | None:
        """None when ready, else why not."""
        depth = self.pipeline.depth()
        if depth >= self.queue_records:
            return f"the write queue is full ({depth} records waiting)"
        failed = self.pipeline.unavailable()
        if failed is not None:
            ago = time.monotonic() - failed[0]
            if ago < self.hold_seconds:
                return f"the last write failed {ago:.1f} s ago: {failed[1]}"
        try:
            self.store.probe_write()
        except StoreError as error:
            return f"the store takes no writes: {error}"
        return None
