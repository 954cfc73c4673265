"""One export request -> priced records: decode (when given bytes), normalise, price, check the costs.

The CPU-heavy half of ingest, and nothing else: no store, no metrics, no shared state but the pricer. It runs in the
receiver's worker processes (`workers.Workers`) or, with no workers, in the thread that received the request.
"""

from __future__ import annotations

import gc
from typing import Any

from google.protobuf.message import Message

from ..normalise import otlp
from ..normalise.limits import Invalid, check_costs
from ..normalise.otlp import Normalised
from ..price import Pricer
from .decode import parse

# Records hold no reference cycles, yet every few hundred of their allocations start a cyclic garbage collection that
# walks the young objects, and every tenth of those walks more: a third of the receiving process's CPU at full load.
GC_THRESHOLDS = (50_000, 20, 100)


def quiet_gc() -> None:
    """Moves the objects alive now (modules, the price catalog) out of the collector's sight and collects far less
    often: what a process that turns requests into records should run once set up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def prepare(kind: str, request: Message | bytes, peer: str | None, pricer: Pricer) -> tuple[Normalised, int]:
    """The priced records of an Export{Logs,Trace,Metrics}ServiceRequest (or its protobuf bytes), with what was
    rejected, and the number of metric data points (metrics requests give no records). Raises decode.Malformed
    for bytes that are not such a request."""
    message: Any = parse(kind, request) if isinstance(request, bytes) else request
    if kind == "metrics":
        return Normalised(), otlp.count_metric_points(message)
    found = otlp.from_logs(message, peer) if kind == "logs" else otlp.from_traces(message, peer)
    priced = []
    for record in found.records:
        pricer.price(record)
        try:
            check_costs(record)
        except Invalid as error:
            found.reject(f"record {record.record_id}: {error}")
            continue
        priced.append(record)
    found.records = priced
    return found, 0
