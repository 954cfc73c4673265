"""Cross-cutting guarantees: sampling, uninstrument, light imports, metric shapes, content capture."""

from __future__ import annotations

import json
import subprocess
import sys

import anthropic
import httpx
import httpx2
import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import llmtally
from llmtally.demo.fake_provider import CHAT_USAGE
from llmtally.instrumentation import semconv

MESSAGES = [{"role": "user", "content": "hi"}]
SECRET = "sk-test-Do-Not-Leak-7f3a9c2e1b"


def openai_client(provider, **kwargs):
    return openai.OpenAI(base_url=provider.openai_base_url, api_key=SECRET, **kwargs)


def test_audit_event_is_emitted_when_the_trace_is_not_sampled(telemetry, provider):
    telemetry.reinstrument(tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
    openai_client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert telemetry.spans(scope=None) == []
    (event,) = telemetry.events()
    record = event.log_record
    # Linked to the (dropped) span's ids, so the receiver can still de-duplicate by span id.
    assert record.trace_id and record.span_id
    assert record.attributes["gen_ai.usage.input_tokens"] == CHAT_USAGE["prompt_tokens"]
    assert telemetry.metric_sum("completion.requests.total") == 1


def _originals():
    import anthropic._base_client as a
    import openai._base_client as o

    return {
        "httpx2.Client.send": httpx2.Client.__dict__["send"],
        "httpx2.AsyncClient.send": httpx2.AsyncClient.__dict__["send"],
        "httpx.Client.send": httpx.Client.__dict__["send"],
        "httpx.AsyncClient.send": httpx.AsyncClient.__dict__["send"],
        "openai.SyncAPIClient.request": o.SyncAPIClient.__dict__["request"],
        "openai.AsyncAPIClient.request": o.AsyncAPIClient.__dict__["request"],
        "anthropic.SyncAPIClient.request": a.SyncAPIClient.__dict__["request"],
        "anthropic.start_api_call_span": a.start_api_call_span,
    }


def test_uninstrument_restores_every_original_over_many_cycles(provider):
    before = _originals()
    for _ in range(5):
        llmtally.instrument()
        wrapped = _originals()
        assert all(wrapped[name] is not before[name] for name in before), "instrument() wrapped everything"
        llmtally.uninstrument()
        assert _originals() == before
    # And nothing is recorded once off: the same meter provider counts a call while on, not one after.
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    llmtally.instrument(meter_provider=meter_provider, tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
    try:
        openai_client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert _requests_counted(reader) == 1
    finally:
        llmtally.uninstrument()
    openai_client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert _requests_counted(reader) == 1
    meter_provider.shutdown()


def _requests_counted(reader: InMemoryMetricReader) -> float:
    """completion.requests.total as llmtally recorded it into `reader` (cumulative)."""
    data = reader.get_metrics_data()
    return sum(
        point.value
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics
        if scope.scope.name == "llmtally"
        for metric in scope.metrics
        if metric.name == "completion.requests.total"
        for point in metric.data.data_points
    )


def test_instrumentation_imports_none_of_the_receiver_dependencies(tmp_path):
    code = (
        "import sys, llmtally, llmtally.instrumentation;"
        "from llmtally.instrumentation import openai, anthropic, http;"
        "llmtally.instrument(); import json; print(json.dumps(sorted(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, cwd=tmp_path)
    loaded = set(json.loads(run.stdout))
    heavy = {"grpc", "prometheus_client", "psycopg", "genai_prices", "yaml", "sqlite3", "llmtally.exporter"}
    assert not heavy & loaded, heavy & loaded
    assert "llmtally.instrumentation.call" in loaded  # the check itself ran against the real modules


def test_metric_names_units_kinds_and_semconv_buckets(telemetry, provider):
    openai_client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    for _ in openai_client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    metrics = telemetry.metrics()
    expected = {
        "completion.requests.total": "{request}",
        "completion.requests.success": "{request}",
        "completion.tokens.prompt": "{token}",
        "completion.tokens.completion": "{token}",
        "completion.tokens.total": "{token}",
        "completion.tokens.cached": "{token}",
        "completion.tokens.cache_write": "{token}",
        "completion.tokens.reasoning": "{token}",
        "completion.duration": "s",
        "completion.time_to_first_token": "s",
        "completion.ratelimit.remaining": "1",
        "completion.ratelimit.limit": "1",
        "gen_ai.client.operation.duration": "s",
        "gen_ai.client.token.usage": "{token}",
    }
    for name, unit in expected.items():
        assert name in metrics, name
        assert metrics[name].unit == unit, name
    counters = [n for n in expected if n.startswith(("completion.requests", "completion.tokens"))]
    for name in counters:
        assert metrics[name].data.is_monotonic, name
        assert all(isinstance(p, NumberDataPoint) for p in metrics[name].data.data_points)
    duration = metrics["gen_ai.client.operation.duration"].data.data_points[0]
    assert isinstance(duration, HistogramDataPoint)
    assert tuple(duration.explicit_bounds) == semconv.DURATION_BUCKETS
    tokens = metrics["gen_ai.client.token.usage"].data.data_points[0]
    assert tuple(tokens.explicit_bounds) == tuple(float(b) for b in semconv.TOKEN_BUCKETS)
    assert telemetry.metric_sum("completion.tokens.prompt") == 2 * CHAT_USAGE["prompt_tokens"]
    allowed = {
        "gen_ai.provider.name",
        "gen_ai.operation.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "error.type",
        "llmtally.feature",
        "llmtally.department",
        "deployment.environment.name",
    }
    for name in [*counters, "completion.duration", "completion.time_to_first_token"]:
        for attrs in telemetry.series(name):
            assert set(attrs) <= allowed, (name, attrs)


def test_metric_attributes_stay_bounded_with_many_users(telemetry, provider):
    client = openai_client(provider)
    for i in range(30):
        with llmtally.attributes(user=f"user-{i}", api_key=f"key-{i}", feature="search"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(telemetry.series("completion.requests.total")) == 1
    assert telemetry.metric_sum("completion.requests.total", {"llmtally.feature": "search"}) == 30
    assert len({r["user.id"] for r in telemetry.records()}) == 30


def test_content_is_not_captured_by_default(telemetry, provider):
    openai_client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    record = telemetry.record()
    assert "gen_ai.input.messages" not in record and "gen_ai.output.messages" not in record


def test_content_capture_with_redaction_and_size_cap(telemetry, provider, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    monkeypatch.setenv("LLMTALLY_REDACT_PATTERNS", r"\b\d{3}-\d{2}-\d{4}\b")
    monkeypatch.setenv("LLMTALLY_CAPTURE_MAX_BYTES", "400")
    telemetry.reinstrument()
    prompt = f"my ssn is 123-45-6789 and my key is {SECRET} " + "x" * 1000
    client = openai_client(provider)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    first, second = telemetry.records()
    captured = first["gen_ai.input.messages"]
    assert "123-45-6789" not in captured and SECRET not in captured and "[REDACTED]" in captured
    assert len(captured.encode()) <= 400 and captured.endswith("...[truncated]")
    output = json.loads(second["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == "Hello from the fake provider!"


def test_anthropic_and_openai_keys_never_appear_in_records(telemetry, provider):
    openai_client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    anthropic.Anthropic(base_url=provider.base_url, api_key=SECRET).messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES
    )
    dumped = json.dumps(telemetry.records(), default=str)
    assert SECRET not in dumped
    assert all(r["llmtally.api_key"].startswith("sha256:") for r in telemetry.records())


@pytest.mark.parametrize("value", ["", "false", "FALSE", "0", "NO_CONTENT"])
def test_capture_setting_off_values(value):
    from llmtally.instrumentation.settings import Settings

    assert Settings.from_env({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": value}).capture_content is False
    assert Settings.from_env({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}).capture_content is True


def test_instrumentation_failures_never_break_the_app(telemetry, provider, monkeypatch):
    from llmtally.instrumentation.apis.base import Endpoint
    from llmtally.instrumentation.reader import ResponseReader

    def broken(*args, **kwargs):
        raise RuntimeError("llmtally bug")

    monkeypatch.setattr(ResponseReader, "feed", broken)
    monkeypatch.setattr(ResponseReader, "read_body", broken)
    client = openai_client(provider, max_retries=0)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake provider!"
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.usage.prompt_tokens == CHAT_USAGE["prompt_tokens"]
    assert len(telemetry.records()) == 2  # still one record each, without usage
    monkeypatch.setattr(Endpoint, "read_request", broken)  # how every hook reads a request
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).id
    assert httpx2.post(f"{provider.openai_base_url}/chat/completions", json={"model": "m", "messages": MESSAGES}).json()
    assert len(telemetry.records()) == 2


def test_histograms_are_recorded_once_at_collection_and_when_the_queue_is_full(telemetry, provider, monkeypatch):
    from llmtally.instrumentation import telemetry as telemetry_mod

    client = openai_client(provider)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert telemetry.metric_sum("completion.duration") == 3
    assert telemetry.metric_sum("completion.duration") == 3  # a second collection records nothing twice
    monkeypatch.setattr(telemetry_mod, "MAX_PENDING", 1)  # one call queued, the next ones record at once
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert telemetry.metric_sum("completion.duration") == 6
    assert telemetry.metric_sum("gen_ai.client.operation.duration") == 6
    assert telemetry.metric_sum("gen_ai.client.token.usage", {"gen_ai.token.type": "input"}) == 6


def _sse_chunk(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


@pytest.mark.parametrize(
    "chunk, finish, error",
    [
        # Two choices in one chunk: the first finished, the last one (whose tail looks like content only) not.
        (
            {"id": "c1", "choices": [{"index": 0, "finish_reason": "length"}, {"index": 1, "finish_reason": None}]},
            ["length"],
            None,
        ),
        ({"id": "c1", "error": {"type": "server_error"}, "choices": [{"index": 0, "finish_reason": None}]}, [], "x"),
    ],
    ids=["two-choices", "error"],
)
def test_stream_chunks_that_end_like_content_only_chunks_are_still_read(chunk, finish, error):
    from llmtally.instrumentation.apis import by_api
    from llmtally.instrumentation.reader import ResponseReader

    reader = ResponseReader(by_api("openai.chat"))
    answer = reader.answer
    reader.start_stream("text/event-stream", 200)
    first = {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": None}]}
    reader.feed(_sse_chunk(first))
    plain = _sse_chunk({"id": "c1", "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]})
    assert plain.endswith(b'"finish_reason":null}]}\n\n')
    assert reader.feed(plain) == plain
    data = _sse_chunk(chunk)
    assert data.endswith(b'"finish_reason":null}]}\n\n')
    reader.feed(data)
    assert answer.finish_reasons == finish
    assert (answer.error_type is not None) == (error is not None)
    # The same content-only chunk split across two reads, and with CRLF line ends, is read as a whole event.
    reader.feed(_sse_chunk({"id": "c1", "choices": [{"index": 0, "finish_reason": "stop"}]}).replace(b"\n", b"\r\n"))
    assert answer.finish_reasons == [*finish, "stop"]
    last = _sse_chunk({"id": "c1", "choices": [{"index": 0, "finish_reason": "tool_calls"}]})
    reader.feed(last[:20])
    reader.feed(last[20:])
    assert answer.finish_reasons == [*finish, "stop", "tool_calls"]
