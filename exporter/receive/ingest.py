"""One export request, whichever transport brought it: normalise, price, queue, and wait until stored."""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import Any

from ..metrics import Metrics
from ..normalise import otlp
from ..normalise.limits import Invalid, check_costs
from ..pipeline import Closed, Overloaded, Pipeline
from ..price import Pricer


class Unavailable(Exception):
    """Not stored now (store down, shutting down, or slower than the client's patience): retry."""


@dataclass(frozen=True)
class Outcome:
    """What the answer says: how many items were rejected for good (OTLP partial success), and why."""

    rejected: int = 0
    message: str = ""


class Ingest:
    def __init__(self, pipeline: Pipeline, pricer: Pricer, metrics: Metrics, ack_timeout: float = 30.0) -> None:
        self.pipeline = pipeline
        self.pricer = pricer
        self.metrics = metrics
        self.ack_timeout = ack_timeout

    def export(self, kind: str, request: Any, peer: str | None = None) -> Outcome:
        """Handles an Export{Logs,Trace,Metrics}ServiceRequest; returns only once its good records are stored.

        Records with values no record may hold (at normalise, after pricing) or that the store refuses for good are
        rejected in the outcome; the others are stored. Raises Unavailable (retry) when the store is unavailable.
        """
        receiver = self.metrics.receiver
        if kind == "metrics":
            receiver.accepted.labels("metric_points").inc(otlp.count_metric_points(request))
            return Outcome()
        signal = "log_records" if kind == "logs" else "spans"
        found = otlp.from_logs(request, peer) if kind == "logs" else otlp.from_traces(request, peer)
        priced = []
        for record in found.records:
            self.pricer.price(record)
            try:
                check_costs(record)
            except Invalid as error:
                found.reject(f"record {record.record_id}: {error}")
                continue
            priced.append(record)
        try:
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
