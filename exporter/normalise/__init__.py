"""Normalise: OTLP log records and spans from any GenAI instrumentation -> one `Record` per LLM request."""

from .record import Record

__all__ = ["Record"]
