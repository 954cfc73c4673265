"""Metrics: the Prometheus registry `/metrics` serves."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from .receiver import ReceiverMetrics
from .records import RecordMetrics


class Metrics:
    """The record-derived families and the receiver's own, in one registry."""

    def __init__(self, max_series: int = 10_000) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.records = RecordMetrics(max_series)
        self.registry.register(self.records)
        self.receiver = ReceiverMetrics(self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["Metrics", "ReceiverMetrics", "RecordMetrics"]
