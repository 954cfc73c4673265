"""One export request, whichever transport brought it: prepare (decode, normalise, price: in a worker process when
there are workers), queue, and wait until stored."""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass

from google.protobuf.message import Message

from ..dimensions import Dimensions
from ..metrics import Metrics
from ..pipeline import Closed, Overloaded, Pipeline
from ..price import Pricer
from .credentials import Sender
from .decode import PROTOBUF
from .prepare import prepare
from .workers import Prepared, WorkerLost, Workers


class Unavailable(Exception):
    """Not stored now (store down, shutting down, or slower than the client's patience): retry."""


@dataclass(frozen=True)
class Outcome:
    """What the answer says: how many items were rejected for good (OTLP partial success), and why."""

    rejected: int = 0
    message: str = ""


class Ingest:
    def __init__(
        self,
        pipeline: Pipeline,
        pricer: Pricer,
        metrics: Metrics,
        ack_timeout: float = 30.0,
        workers: Workers | None = None,
        dimensions: Dimensions | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.pricer = pricer
        self.metrics = metrics
        self.ack_timeout = ack_timeout
        self.workers = workers
        self.dimensions = dimensions or Dimensions()  # the declared ones: others are dropped, counted
        # One request at a time takes its records out of a worker's answer and queues them, and only when they fit:
        # the records in this process stay within the queue, whatever the requests in flight hold.
        self._queueing = threading.Lock()

    def export(
        self,
        kind: str,
        request: Message | bytes,
        peer: str | None = None,
        sender: Sender | None = None,
        media: str = PROTOBUF,
    ) -> Outcome:
        """Handles an Export{Logs,Trace,Metrics}ServiceRequest (or its body: protobuf, or JSON with `media`
        decode.JSON); returns only once its good records are stored.

        Records with values no record may hold (at normalise, after pricing) or that the store refuses for good are
        rejected in the outcome, and so are the records of services `sender` may not write for; the others are
        stored. Raises decode.Malformed for bytes that are not a request,
        Unavailable (retry) when the store is unavailable or a worker process was lost.
        """
        receiver = self.metrics.receiver
        sent: Prepared | None = None
        try:
            if self.workers is not None and isinstance(request, bytes):
                sent = self.workers.prepare(kind, request, peer, media)
                count, points = sent.count, sent.points
            else:
                found, points = prepare(kind, request, peer, self.pricer, media)
                count = len(found.records)
        except WorkerLost as error:
            receiver.refused.labels("unavailable").inc()
            raise Unavailable(str(error)) from error
        if kind == "metrics":
            receiver.accepted.labels("metric_points").inc(points)
            return Outcome()
        signal = "log_records" if kind == "logs" else "spans"
        with self._queueing:
            try:
                self.pipeline.check_room(count)
                if sent is not None:
                    found, sent = sent.normalised(), None  # the pickled records go as the records come
                if sender is not None:
                    sender.screen(found)
                priced = found.records
                dropped = self.dimensions.keep(priced)
                if dropped:
                    receiver.dimensions_dropped.inc(dropped)
                future = self.pipeline.submit(priced)
            except Overloaded:
                receiver.refused.labels("overloaded").inc()
                raise
            except Closed as error:
                receiver.refused.labels("unavailable").inc()
                raise Unavailable(str(error)) from error
        try:
            written = future.result(timeout=self.ack_timeout)
        except concurrent.futures.TimeoutError as error:
            receiver.refused.labels("unavailable").inc()
            raise Unavailable("storing took longer than the acknowledgement timeout") from error
        except Exception as error:  # StoreUnavailable: nothing of it is acknowledged, the client retries
            receiver.refused.labels("unavailable").inc()
            raise Unavailable(f"the audit store failed: {error}") from error
        for _, why in written.rejected:
            found.reject(why)
        receiver.accepted.labels(signal).inc(len(priced) - len(written.rejected))
        if found.rejected:
            receiver.rejected.labels(signal).inc(found.rejected)
        return Outcome(found.rejected, found.message)
