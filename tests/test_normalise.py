"""Normalisation: OTLP requests built from real instrumented calls, and peers' attribute conventions -> records."""

from __future__ import annotations

import anthropic
import openai
import pytest
from opentelemetry.exporter.otlp.proto.common._internal import _encode_key_value
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

import llmtally
from llmtally.demo.fake_provider import ANTHROPIC_USAGE, CHAT_USAGE
from llmtally.exporter.normalise import otlp

MESSAGES = [{"role": "user", "content": "hi"}]


def test_audit_event_and_span_of_one_call_are_one_record_with_the_same_content(telemetry, provider):
    with llmtally.attributes(user="u1", feature="search", department="r&d", api_key="team-a"):
        openai.OpenAI(base_url=provider.openai_base_url, api_key="sk-x").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    from_logs = otlp.from_logs(encode_logs(telemetry.events()), peer="10.0.0.9").records
    from_spans = otlp.from_traces(encode_spans(telemetry.spans())).records
    assert len(from_logs) == len(from_spans) == 1
    log_record, span_record = from_logs[0], from_spans[0]
    assert log_record.record_id == span_record.record_id == span_record.span_id  # de-duplication key
    for field in (
        "provider",
        "operation",
        "request_model",
        "response_model",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "user_id",
        "api_key",
        "feature",
        "department",
        "usage_source",
    ):
        assert getattr(log_record, field) == getattr(span_record, field), field
    assert log_record.input_tokens == CHAT_USAGE["prompt_tokens"]
    assert log_record.cached_tokens == 1024 and log_record.reasoning_tokens == 128
    assert (log_record.user_id, log_record.feature, log_record.api_key) == ("u1", "search", "team-a")
    assert log_record.source == "llmtally" and log_record.source_ip == "10.0.0.9"
    assert log_record.ratelimits["requests.remaining"] == 9999.0
    assert (
        abs((log_record.end_time_ns - log_record.start_time_ns) - (span_record.end_time_ns - span_record.start_time_ns))
        < 5e6
    )


def test_anthropic_sdk_native_span_becomes_a_record(telemetry, provider, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    llmtally.uninstrument()
    anthropic.Anthropic(base_url=provider.base_url, api_key="sk-ant-x").messages.create(
        model="claude-haiku-4-5", max_tokens=32, messages=MESSAGES
    )
    (native,) = telemetry.spans(scope=None)
    assert native.instrumentation_scope.name == "com.anthropic.sdk.python"
    (record,) = otlp.from_traces(encode_spans([native])).records
    assert record.source == "anthropic"
    assert record.provider == "anthropic" and record.request_model == "claude-haiku-4-5"
    expected_input = (
        ANTHROPIC_USAGE["input_tokens"]
        + ANTHROPIC_USAGE["cache_read_input_tokens"]
        + ANTHROPIC_USAGE["cache_creation_input_tokens"]
    )
    assert record.input_tokens == expected_input
    assert record.cache_write_tokens == ANTHROPIC_USAGE["cache_creation_input_tokens"]
    assert record.cached_tokens == ANTHROPIC_USAGE["cache_read_input_tokens"]
    assert record.output_tokens == ANTHROPIC_USAGE["output_tokens"]


def _span(scope: str, attrs: dict, kind: int = Span.SPAN_KIND_CLIENT, error: bool = False) -> ExportTraceServiceRequest:
    span = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name="x",
        kind=kind,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_001_500_000_000,
        attributes=[_encode_key_value(k, v) for k, v in attrs.items()],
    )
    if error:
        span.status.code = 2
        span.status.message = "boom"
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    request.resource_spans[0].scope_spans[0].scope.name = scope
    request.resource_spans[0].resource.attributes.append(_encode_key_value("service.name", "billing"))
    return request


def test_openllmetry_conventions():
    request = _span(
        "opentelemetry.instrumentation.openai.v1",
        {
            "gen_ai.system": "openai",
            "llm.request.type": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.prompt_tokens": 120,
            "gen_ai.usage.completion_tokens": 30,
            "llm.usage.total_tokens": 150,
            "gen_ai.usage.cache_read_input_tokens": 100,
            "llm.is_streaming": True,
        },
    )
    (record,) = otlp.from_traces(request).records
    assert (record.source, record.provider, record.operation) == ("openllmetry", "openai", "chat")
    assert (record.input_tokens, record.output_tokens, record.total_tokens, record.cached_tokens) == (120, 30, 150, 100)
    assert record.stream is True and record.duration_s == 1.5 and record.service == "billing"
    assert record.usage_source == "provider"


def test_official_genai_and_openlit_conventions():
    official = _span(
        "opentelemetry.instrumentation.genai.openai",
        {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.usage.input_tokens": 8,
        },
    )
    (record,) = otlp.from_traces(official).records
    assert (record.source, record.operation, record.input_tokens) == ("otel-genai", "embeddings", 8)
    openlit = _span(
        "openlit.otel.tracing",
        {
            "gen_ai.system": "anthropic",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "claude-haiku-4-5",
            "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.server.ttft": 0.25,
            "gen_ai.request.user": "bob",
        },
        error=True,
    )
    (record,) = otlp.from_traces(openlit).records
    assert (record.source, record.provider, record.user_id, record.ttft_s) == ("openlit", "anthropic", "bob", 0.25)
    assert record.status == "error" and record.error_type == "_OTHER" and record.error_message == "boom"


def test_non_llm_spans_are_ignored_not_rejected():
    agent = _span(
        "opentelemetry.instrumentation.genai.openai_agents",
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "gpt-4o"},
    )
    http = _span("opentelemetry.instrumentation.httpx", {"http.request.method": "POST"})
    wrapper = _span("openlit", {"gen_ai.request.model": "gpt-4o"}, kind=Span.SPAN_KIND_INTERNAL)
    for request in (agent, http, wrapper):
        found = otlp.from_traces(request)
        assert found.records == [] and found.rejected == 0


def test_a_genai_span_without_a_span_id_is_rejected_with_a_reason():
    request = _span("openlit", {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1})
    request.resource_spans[0].scope_spans[0].spans[0].span_id = b""
    found = otlp.from_traces(request)
    assert found.records == [] and found.rejected == 1 and "span id" in found.message


def test_nested_spans_of_two_instrumentations_keep_their_parentage_for_the_store():
    """Normalising keeps both layers of one call with their parent span ids; the store makes them one record
    (tests/test_dedup.py)."""
    outer = _span(
        "opentelemetry.instrumentation.openai.v1",
        {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.prompt_tokens": 10},
    )
    inner = _span(
        "llmtally",
        {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10},
    )
    child = inner.resource_spans[0].scope_spans[0].spans[0]
    child.span_id = b"\x03" * 8
    child.parent_span_id = b"\x02" * 8  # the OpenLLMetry span wraps ours
    outer.resource_spans.append(inner.resource_spans[0])
    records = {r.source: r for r in otlp.from_traces(outer).records}
    assert set(records) == {"openllmetry", "llmtally"}
    assert records["llmtally"].record_id == "03" * 8
    assert records["llmtally"].parent_span_id == records["openllmetry"].record_id == "02" * 8


def test_1h_cache_writes_and_speed_are_read_and_kept_within_their_total():
    base = {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-opus-4-8", "llmtally.speed": "fast"}
    request = _span(
        "llmtally",
        {**base, "gen_ai.usage.cache_creation.input_tokens": 300, "llmtally.usage.cache_creation.1h.input_tokens": 200},
    )
    (record,) = otlp.from_traces(request).records
    assert (record.cache_write_tokens, record.cache_write_1h_tokens, record.speed) == (300, 200, "fast")
    # A total below its part (another sender's counts) is raised to it, as input is raised to its cache counts.
    (raised,) = otlp.from_traces(
        _span("llmtally", {**base, "llmtally.usage.cache_creation.1h.input_tokens": 50})
    ).records
    assert (raised.cache_write_tokens, raised.cache_write_1h_tokens) == (50, 50)
    negative = otlp.from_traces(_span("llmtally", {**base, "llmtally.usage.cache_creation.1h.input_tokens": -5}))
    assert negative.records == [] and negative.rejected == 1 and "cache_write_1h_tokens=-5" in negative.message


UNIT_BASE = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-image-1"}


def test_unit_attributes_become_the_records_units():
    request = _span(
        "llmtally",
        {
            **UNIT_BASE,
            "gen_ai.usage.input_tokens": 1_000,
            "llmtally.usage.unit.input_image_tokens": 600,
            "llmtally.usage.unit.images": 2,
            "llmtally.usage.unit.audio_seconds": 12.5,  # seconds may be fractional
            "llmtally.usage.unit.input_characters": 40.0,  # a whole count sent as a double
            # Ignored, the record kept: a unit this genai-prices does not know, and ones the record has fields for.
            "llmtally.usage.unit.holograms": 3,
            "llmtally.usage.unit.input_tokens": 5,
            "llmtally.usage.unit.input_audio_tokens": 5,
            "llmtally.usage.unit.web_searches": 5,
            "llmtally.usage.unit.requests": 5,
        },
    )
    (record,) = otlp.from_traces(request).records
    assert record.units == {"audio_seconds": 12.5, "images": 2, "input_characters": 40, "input_image_tokens": 600}
    assert list(record.units) == sorted(record.units) and type(record.units["input_characters"]) is int
    assert (record.input_tokens, record.input_audio_tokens, record.web_searches) == (1_000, 0, 0)
    (plain,) = otlp.from_traces(_span("llmtally", {**UNIT_BASE, "gen_ai.usage.input_tokens": 1})).records
    assert plain.units == {}


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("images", "2", "units.images='2' is not a whole count"),
        ("images", True, "units.images=True is not a whole count"),
        ("images", 1.5, "units.images=1.5 is not a whole count"),
        ("input_image_tokens", -3, "units.input_image_tokens=-3 is not between 0"),
        ("input_image_tokens", 10**13, "is not between 0 and 1000000000000"),
        ("audio_seconds", float("nan"), "units.audio_seconds=nan is not a duration in seconds"),
        ("audio_seconds", -0.5, "units.audio_seconds=-0.5 is not between 0"),
        ("audio_seconds", [1, 2], "is not a duration in seconds"),
    ],
)
def test_a_bad_unit_value_rejects_the_record_with_its_reason(key, value, reason):
    found = otlp.from_traces(_span("llmtally", {**UNIT_BASE, f"llmtally.usage.unit.{key}": value}))
    assert found.records == [] and found.rejected == 1 and reason in found.message


@pytest.mark.parametrize(
    "operation", ["image_generation", "image_edit", "text_to_speech", "transcription", "translation", "rerank"]
)
def test_llmtallys_own_operations_are_llm_calls(operation):
    (record,) = otlp.from_traces(_span("llmtally", {**UNIT_BASE, "gen_ai.operation.name": operation})).records
    assert record.operation == operation
    for kept in ("generate_content", "embeddings", "text_completion"):
        assert otlp.from_traces(_span("x", {**UNIT_BASE, "gen_ai.operation.name": kept})).records
