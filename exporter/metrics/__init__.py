"""Metrics: the Prometheus registry `/metrics` serves."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest

from .receiver import ReceiverMetrics
from .records import RecordMetrics


class Metrics:
    """The record-derived families and the receiver's own, in one registry."""

    def __init__(self, max_series: int = 10_000, dimension_labels: Sequence[tuple[str, int]] = ()) -> None:
        """`dimension_labels`: the custom dimensions that are labels, with their caps on distinct values."""
        self.registry = CollectorRegistry(auto_describe=False)
        self.records = RecordMetrics(max_series, dimension_labels, self._overflowed)
        self.registry.register(self.records)
        self.receiver = ReceiverMetrics(self.registry)

    def _overflowed(self, dimension: str) -> None:
        self.receiver.label_overflow.labels(dimension).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["Metrics", "ReceiverMetrics", "RecordMetrics"]
