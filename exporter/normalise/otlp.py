"""OTLP export requests -> records: llmtally audit events from logs, GenAI spans from traces."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from .convert import is_llm_call, to_record
from .limits import check, reason, seconds
from .record import Record
from .values import attributes

AUDIT_EVENT = "llmtally.completion"
_SPAN_KIND_INTERNAL = 1
_STATUS_ERROR = 2
_NO_SPAN = "0" * 16
_REASONS_SHOWN = 5
# Instrumentation scope prefix -> the `source` a record names (first match wins).
_SOURCES = (
    ("llmtally", "llmtally"),
    ("com.anthropic", "anthropic"),
    ("openlit", "openlit"),
    ("opentelemetry.instrumentation.genai", "otel-genai"),
    ("opentelemetry.util.genai", "otel-genai"),
    ("opentelemetry.instrumentation.openai_v2", "otel-genai"),
    ("opentelemetry.instrumentation.google_genai", "otel-genai"),
    ("opentelemetry.instrumentation.", "openllmetry"),
)


@dataclass
class Normalised:
    """The records of one export request, and what of it was rejected (for OTLP partial success)."""

    records: list[Record] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, why: str) -> None:
        self.rejected += 1
        if len(self.errors) < _REASONS_SHOWN and why not in self.errors:
            self.errors.append(why)

    @property
    def message(self) -> str:
        """The first distinct reasons (OTLP partial success's error_message)."""
        shown = "; ".join(self.errors)
        return f"{shown}; ({self.rejected} rejected in all)" if self.rejected > len(self.errors) else shown


def source_of(scope: str) -> str:
    for prefix, name in _SOURCES:
        if scope.startswith(prefix):
            return name
    return scope or "unknown"


def from_logs(request: Any, peer: str | None = None) -> Normalised:
    """Records from the `llmtally.completion` events in an ExportLogsServiceRequest; other logs are ignored."""
    out = Normalised()
    for resource_logs in request.resource_logs:
        resource: dict[str, Any] | None = None
        for scope_logs in resource_logs.scope_logs:
            source = source_of(scope_logs.scope.name)
            for log in scope_logs.log_records:
                if log.event_name != AUDIT_EVENT:
                    continue
                if resource is None:
                    resource = attributes(resource_logs.resource.attributes)
                attrs = attributes(log.attributes)
                if not is_llm_call(attrs):
                    out.reject("audit event without gen_ai.request.model")
                    continue
                end_ns = log.time_unix_nano or log.observed_time_unix_nano
                if not end_ns:
                    out.reject("audit event without a timestamp")
                    continue
                if len(log.span_id) not in (0, 8):
                    out.reject(f"audit event with a span id of {len(log.span_id)} bytes (8, or none)")
                    continue
                span_id = log.span_id.hex()
                if span_id in ("", _NO_SPAN):
                    record_id = hashlib.sha256(log.SerializeToString(deterministic=True)).hexdigest()[:32]
                else:
                    record_id = span_id
                try:
                    duration = seconds(attrs.get("llmtally.duration"), "llmtally.duration")
                    start_ns = end_ns - int(duration * 1e9) if duration is not None else end_ns
                    record = to_record(
                        attrs,
                        record_id=record_id,
                        start_ns=start_ns,
                        end_ns=end_ns,
                        trace_id=log.trace_id.hex(),
                        span_id=span_id if span_id != _NO_SPAN else "",
                        source=source,
                        resource=resource,
                        peer=peer,
                    )
                    check(record)
                except Exception as error:  # limits.Invalid, or a bug: this record only, with the reason
                    out.reject(f"audit event {record_id}: {reason(error)}")
                    continue
                out.records.append(record)
    return out


def from_traces(request: Any, peer: str | None = None) -> Normalised:
    """Records from the GenAI client spans in an ExportTraceServiceRequest; other spans are ignored."""
    out = Normalised()
    for resource_spans in request.resource_spans:
        resource: dict[str, Any] | None = None
        for scope_spans in resource_spans.scope_spans:
            source = source_of(scope_spans.scope.name)
            for span in scope_spans.spans:
                attrs = attributes(span.attributes)
                if not is_llm_call(attrs):
                    continue
                if span.kind == _SPAN_KIND_INTERNAL and "gen_ai.usage.input_tokens" not in attrs:
                    continue  # a framework's wrapper span around the client call, not the call
                if len(span.span_id) != 8 or not any(span.span_id):
                    out.reject("GenAI span without a valid span id")
                    continue
                if resource is None:
                    resource = attributes(resource_spans.resource.attributes)
                span_id = span.span_id.hex()
                try:
                    record = to_record(
                        attrs,
                        record_id=span_id,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano or span.start_time_unix_nano,
                        trace_id=span.trace_id.hex(),
                        span_id=span_id,
                        source=source,
                        resource=resource,
                        span_failed=span.status.code == _STATUS_ERROR,
                        status_message=span.status.message or None,
                        peer=peer,
                    )
                    check(record)
                except Exception as error:  # limits.Invalid, or a bug: this record only, with the reason
                    out.reject(f"span {span_id}: {reason(error)}")
                    continue
                if span.parent_span_id:  # evidence for the store: nested instrumentations record one call
                    record.parent_span_id = span.parent_span_id.hex()
                out.records.append(record)
    return out


def count_metric_points(request: Any) -> int:
    """Data points in an ExportMetricsServiceRequest (accepted, never turned into records)."""
    total = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total
