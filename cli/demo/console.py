"""`llmtally demo` before the receiver: the example app instrumented in-process, its telemetry printed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmtally
from llmtally.demo import app
from llmtally.demo.fake_provider import FakeProvider

COLUMNS = (
    ("provider", "gen_ai.provider.name"),
    ("operation", "gen_ai.operation.name"),
    ("model", "gen_ai.response.model"),
    ("in", "gen_ai.usage.input_tokens"),
    ("cached", "gen_ai.usage.cache_read.input_tokens"),
    ("out", "gen_ai.usage.output_tokens"),
    ("reasoning", "gen_ai.usage.reasoning.output_tokens"),
    ("stream", "gen_ai.request.stream"),
    ("ttft_ms", "gen_ai.response.time_to_first_chunk"),
    ("ms", "llmtally.duration"),
    ("user", "user.id"),
    ("feature", "llmtally.feature"),
    ("key", "llmtally.api_key"),
    ("error", "error.type"),
)


_GAUGE_KEYS = ("gen_ai.provider.name", "gen_ai.request.model", "llmtally.ratelimit.kind")


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in ("gen_ai.response.time_to_first_chunk", "llmtally.duration"):
        return f"{float(value) * 1000:.1f}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]] = COLUMNS) -> str:
    """A plain-text table of `rows`, one column per (title, attribute)."""
    cells = [[title for title, _ in columns]]
    cells += [[_cell(key, row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_demo() -> int:
    """Runs the example app against the fake provider with llmtally on; prints what it produced."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metrics])
    llmtally.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, logger_provider=logger_provider)
    try:
        with FakeProvider() as provider:
            print(f"fake provider on {provider.base_url}; running the example app (OpenAI, Anthropic, Ollama)...")
            app.run(provider.base_url)
    finally:
        llmtally.uninstrument()
    events = [dict(item.log_record.attributes or {}) for item in logs.get_finished_logs()]
    print(f"\n{len(events)} audit events (llmtally.completion), {len(spans.get_finished_spans())} spans:\n")
    print(table(events))
    print("\nmetrics (meter llmtally), summed over all series (gauges: last values):")
    data = metrics.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                _print_metric(metric.name, metric.unit or "", metric.data)
    print("\nNext: point OTLP at `llmtally serve` to price and store these (see README).")
    return 0


def _print_metric(name: str, unit: str, data: Any) -> None:
    points: list[Any] = list(data.data_points)
    if isinstance(data, Gauge):
        print(f"  {name:<36} {unit:<10} ({len(points)} series), last values:")
        for point in points:
            attrs = dict(point.attributes or {})
            provider, model, kind = (str(attrs.get(k, "-")) for k in _GAUGE_KEYS)
            print(f"      {provider + '/' + model + ' ' + kind:<48} {point.value:g}")
        return
    total = sum(getattr(p, "value", None) or getattr(p, "sum", 0) or 0 for p in points)
    print(f"  {name:<36} {unit:<10} {total:g}  ({len(points)} series)")
