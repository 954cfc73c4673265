"""One export request -> priced records: decode (when given bytes), normalise, price, check the costs.

The CPU-heavy half of ingest, and nothing else: no store, no metrics, no shared state but the pricer. It runs in the
receiver's worker processes (`workers.Workers`) or, with no workers, in the thread that received the request.
"""

from __future__ import annotations

import gc
from typing import Any

from google.protobuf.message import Message

from ..normalise import otlp
from ..normalise.limits import check_costs, reason
from ..normalise.otlp import Normalised
from ..price import Pricer
from .decode import PROTOBUF, parse

# Records hold no reference cycles, yet every few hundred of their allocations start a cyclic garbage collection that
# walks the young objects, and every tenth of those walks more: a third of the receiving process's CPU at full load.
GC_THRESHOLDS = (50_000, 20, 100)


def quiet_gc() -> None:
    """Moves the objects alive now (modules, the price catalog) out of the collector's sight and collects far less
    often: what a process that turns requests into records should run once set up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def prepare(
    kind: str, request: Message | bytes, peer: str | None, pricer: Pricer, media: str = PROTOBUF
) -> tuple[Normalised, int]:
    """The priced records of an Export{Logs,Trace,Metrics}ServiceRequest (or its body, of type `media`), with what was
    rejected, and the number of metric data points (metrics requests give no records). Raises decode.Malformed
    for bytes that are not such a request."""
    message: Any = parse(kind, request, media) if isinstance(request, bytes) else request
    if kind == "metrics":
        return Normalised(), otlp.count_metric_points(message)
    try:
        found = otlp.from_logs(message, peer) if kind == "logs" else otlp.from_traces(message, peer)
    except Exception as error:  # a bug outside the per-record path: its items rejected, with why, not the request
        return _rejected(kind, message, error), 0
    priced = []
    for record in found.records:
        try:
            pricer.price(record)
            check_costs(record)
        except Exception as error:  # limits.Invalid, or a bug: this record only, with the reason
            found.reject(f"record {record.record_id}: {reason(error)}")
            continue
        priced.append(record)
    found.records = priced
    return found, 0


def _rejected(kind: str, message: Any, error: Exception) -> Normalised:
    """Every log record or span of a request rejected for `error`."""
    found = Normalised()
    if kind == "logs":
        items = sum(len(s.log_records) for r in message.resource_logs for s in r.scope_logs)
    else:
        items = sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
    why = f"the request's records: {reason(error)}"
    for _ in range(items):
        found.reject(why)
    return found
