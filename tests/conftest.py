"""Shared fixtures: a fake provider on 127.0.0.1 and in-memory OpenTelemetry pipelines.

The in-memory providers are also installed as the global ones (once per session), so telemetry that other code
sends to the globals (such as the Anthropic SDK's own spans) is captured too and can be counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmtally
from llmtally.demo.fake_provider import FakeProvider
from llmtally.exporter.normalise.convert import to_record
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.price import Pricer
from llmtally.exporter.store import open_store
from llmtally.exporter.store.sql import SQLStore
from pg_server import PostgresServer

# The sampling parameters the provider tests ask for, as a record names them: a test sends them under its API's own
# names (`sampling_parameters`) and finds every one on the record.
SAMPLING: dict[str, Any] = {
    "gen_ai.request.temperature": 0.3,
    "gen_ai.request.top_p": 0.9,
    "gen_ai.request.top_k": 40,
    "gen_ai.request.max_tokens": 256,
    "gen_ai.request.stop_sequences": ("END",),
    "gen_ai.request.seed": 7,
    "gen_ai.request.frequency_penalty": 0.1,
    "gen_ai.request.presence_penalty": 0.2,
}


def sampling_parameters(**renamed: str) -> dict[str, Any]:
    """`SAMPLING` as an API takes them: each under the last part of its record name (`temperature`), or under the
    name `renamed` gives that part (`top_p="p"`); sequences as lists."""
    parts = {name.removeprefix("gen_ai.request."): value for name, value in SAMPLING.items()}
    assert set(renamed) <= set(parts), renamed
    return {renamed.get(part, part): list(v) if isinstance(v, tuple) else v for part, v in parts.items()}


@dataclass
class Captured:
    """What the instrumentation produced during one test."""

    span_exporter: InMemorySpanExporter
    log_exporter: InMemoryLogRecordExporter
    metric_reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider

    def instrument(self, **settings: Any) -> None:
        """Instruments llmtally into these pipelines; `settings` are `llmtally.instrument`'s (and win)."""
        pipelines = {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            "logger_provider": self.logger_provider,
        }
        llmtally.instrument(**(pipelines | settings))

    def reinstrument(self, **settings: Any) -> None:
        """Instruments llmtally again, into these pipelines, with other `settings` (`llmtally.instrument`'s)."""
        llmtally.uninstrument()
        self.instrument(**settings)

    def clear(self) -> None:
        """Drops the spans and audit events captured so far (the metrics keep their counts)."""
        self.span_exporter.clear()
        self.log_exporter.clear()

    def closed_early(self, input_tokens: int) -> dict[str, Any]:
        """The only record, of a stream the app let go of after its first chunks: no error, and the usage read by
        then (partial: `input_tokens` of input)."""
        record = self.record()
        assert record["llmtally.stream.outcome"] == "closed_early"
        assert record["llmtally.usage.source"] == "partial"
        assert record["gen_ai.usage.input_tokens"] == input_tokens
        assert "error.type" not in record
        return record

    def spans(self, scope: str | None = "llmtally") -> list[ReadableSpan]:
        found = self.span_exporter.get_finished_spans()
        return [
            s for s in found if scope is None or (s.instrumentation_scope and s.instrumentation_scope.name == scope)
        ]

    def events(self) -> list[ReadableLogRecord]:
        return [r for r in self.log_exporter.get_finished_logs() if r.log_record.event_name == "llmtally.completion"]

    def records(self) -> list[dict[str, Any]]:
        """The audit events' attributes: one dict per recorded LLM request."""
        return [dict(r.log_record.attributes or {}) for r in self.events()]

    def record(self) -> dict[str, Any]:
        """The only record; fails when there is not exactly one."""
        records = self.records()
        assert len(records) == 1, f"expected exactly one record, got {len(records)}: {records}"
        return records[0]

    def stored(self, pricer: Pricer | None = None) -> tuple[dict[str, Any], Record]:
        """The only span's attributes (which the audit event says too) and the record the receiver converts and
        prices (with `pricer`, else the default one) from them."""
        (span,) = self.spans()
        attrs = dict(span.attributes or {})
        assert attrs == self.record()
        assert span.start_time is not None and span.end_time is not None
        record = to_record(
            attrs,
            record_id=f"{span.context.span_id:016x}",
            start_ns=span.start_time,
            end_ns=span.end_time,
            source="llmtally",
        )
        (pricer or Pricer()).price(record)
        return attrs, record

    def metrics(self) -> dict[str, Metric]:
        data = self.metric_reader.get_metrics_data()
        found: dict[str, Metric] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                if scope.scope.name == "llmtally":
                    for metric in scope.metrics:
                        found[metric.name] = metric
        return found

    def metric_sum(self, name: str, match: dict[str, Any] | None = None) -> float:
        """The sum of counter `name` (or the count of histogram `name`) over series whose attributes match."""
        metric = self.metrics().get(name)
        if metric is None:
            return 0
        total = 0.0
        for point in metric.data.data_points:
            attrs = dict(point.attributes or {})
            if all(attrs.get(k) == v for k, v in (match or {}).items()):
                total += point.value if hasattr(point, "value") else point.count
        return total

    def series(self, name: str) -> list[dict[str, Any]]:
        """The attribute sets of metric `name`."""
        metric = self.metrics().get(name)
        return [dict(p.attributes or {}) for p in metric.data.data_points] if metric else []


_SESSION: dict[str, Any] = {}


def _session_providers() -> dict[str, Any]:
    if not _SESSION:
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        logs = InMemoryLogRecordExporter()
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
        trace.set_tracer_provider(tracer_provider)
        _logs.set_logger_provider(logger_provider)
        _SESSION.update(spans=spans, logs=logs, tracer_provider=tracer_provider, logger_provider=logger_provider)
    return _SESSION


@pytest.fixture
def telemetry() -> Iterator[Captured]:
    """llmtally instrumented into fresh in-memory pipelines; uninstrumented afterwards."""
    session = _session_providers()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    if not _SESSION.get("meter_set"):
        metrics.set_meter_provider(meter_provider)
        _SESSION["meter_set"] = True
    captured = Captured(
        session["spans"],
        session["logs"],
        reader,
        session["tracer_provider"],
        meter_provider,
        session["logger_provider"],
    )
    captured.clear()
    captured.instrument()
    try:
        yield captured
    finally:
        llmtally.uninstrument()
        meter_provider.shutdown()


@pytest.fixture(scope="module")
def litellm() -> Any:
    """LiteLLM, set to read its own bundled price map (no fetch of it at import)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as module

    return module


@pytest.fixture(scope="session")
def provider_server() -> Iterator[FakeProvider]:
    with FakeProvider() as server:
        yield server


@pytest.fixture
def provider(provider_server: FakeProvider) -> FakeProvider:
    """The session's fake provider, with scripts and recorded requests cleared."""
    provider_server.reset()
    return provider_server


class ToFakeProvider(httpx.HTTPTransport):
    """An httpx transport that sends every request to the fake provider, whatever host its URL names (the request
    keeps that host in its `Host` header): a provider's real host, routed here."""

    def __init__(self, provider: FakeProvider) -> None:
        super().__init__()
        self.port = int(provider.port)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return super().handle_request(request)


def new_pg_server() -> PostgresServer:
    """A new (not started) PostgreSQL cluster; fails, never skips, when Debian's binaries are missing."""
    try:
        return PostgresServer.create()
    except FileNotFoundError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (Debian's binaries, loopback, throwaway data directory, stopped by
    PID); each test that needs one gets its own database."""
    server = new_pg_server()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def fresh_store(request: pytest.FixtureRequest, workdir: Any) -> tuple[str, Callable[[], None]]:
    """For a fixture parametrised with "sqlite" and "postgresql": a new, empty store (a SQLite file in `workdir`, or
    a database on the session's PostgreSQL) and what drops it."""
    if request.param == "sqlite":
        return f"sqlite:///{workdir}/audit.db", lambda: None
    server: PostgresServer = request.getfixturevalue("pg_server")
    dsn = server.create_database()
    return dsn, lambda: server.drop_database(dsn)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty store: a SQLite file, then a PostgreSQL database."""
    url, drop = fresh_store(request, tmp_path)
    yield url
    drop()


@pytest.fixture
def opener(store_url: str) -> Iterator[Callable[[], SQLStore]]:
    """Opens stores on the test's database (`store_url`) and closes them all at the end."""
    opened: list[SQLStore] = []

    def open_one() -> SQLStore:
        store = open_store(store_url)
        assert isinstance(store, SQLStore)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Callable[[], SQLStore]) -> SQLStore:
    """A store on the test's database."""
    return opener()
