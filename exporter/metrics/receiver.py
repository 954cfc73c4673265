"""The receiver's own health: `llmtally_receiver_*`."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ReceiverMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "llmtally_receiver_accepted",
            "Items accepted, by signal (log records, spans, metric data points)",
            ["signal"],
            registry=registry,
        )
        self.rejected = Counter(
            "llmtally_receiver_rejected",
            "Items rejected (OTLP partial success), by signal",
            ["signal"],
            registry=registry,
        )
        self.refused = Counter(
            "llmtally_receiver_refused_requests",
            "Export requests refused whole, by reason "
            "(malformed, too_large, busy, overloaded, unavailable, unauthenticated)",
            ["reason"],
            registry=registry,
        )
        self.stored = Counter("llmtally_receiver_records_stored", "Records newly stored", registry=registry)
        self.duplicates = Counter(
            "llmtally_receiver_duplicate_records",
            "Records received again (span and audit event of one request, retried batches) and not counted",
            registry=registry,
        )
        self.dimensions_dropped = Counter(
            "llmtally_receiver_dimensions_dropped",
            "Custom dimensions not declared under dimensions: and dropped, per span or audit event received",
            registry=registry,
        )
        self.label_overflow = Counter(
            "llmtally_receiver_dimension_label_overflow",
            "Records whose value of a dimension label was past its max_values and counted as `other`, by dimension",
            ["dimension"],
            registry=registry,
        )
        self.queue_depth = Gauge("llmtally_receiver_queue_depth", "Records waiting to be stored", registry=registry)
        self.write_latency = Histogram(
            "llmtally_receiver_write_latency_seconds",
            "Time to store one group of batches",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self.last_stored = Gauge(
            "llmtally_receiver_last_stored_timestamp_seconds",
            "Unix time a record was last newly stored (the receiver's start until then)",
            registry=registry,
        )
        self.last_stored.set(time.time())
        self.catalog_age = Gauge(
            "llmtally_receiver_price_catalog_age_seconds", "Age of the price catalog in use", registry=registry
        )

    def watch(self, queue_depth: Callable[[], float], catalog_age: Callable[[], float]) -> None:
        self.queue_depth.set_function(queue_depth)
        self.catalog_age.set_function(catalog_age)
