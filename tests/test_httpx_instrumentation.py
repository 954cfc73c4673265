"""llmtally beside `opentelemetry-instrumentation-httpx`, the standard HTTP instrumentation that the launcher loads
whenever it is installed: its HTTP client spans nest under llmtally's GenAI span, `traceparent` reaches the provider
in the GenAI span's trace, and each LLM request is still one record (in the app and in the receiver)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import httpx2
import openai
import pytest
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan

import llmtally
from conftest import Captured
from instrumented_app import APP_CALLS, run_instrumented_app
from llmtally.demo.fake_provider import CHAT_USAGE, FakeProvider
from llmtally.exporter.store import open_store
from otlp_sink import OTLPSink, attributes
from receiver import Receiver

HTTPX_SCOPE = "opentelemetry.instrumentation.httpx"
MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = {"model": "llama-3.3-70b", "messages": MESSAGES}


def _instrument_http(captured: Captured) -> None:
    for instrumentor in (HTTPXClientInstrumentor(), HTTPX2ClientInstrumentor()):
        instrumentor.instrument(tracer_provider=captured.tracer_provider, meter_provider=captured.meter_provider)


@pytest.fixture(params=["llmtally-first", "httpx-first"])
def both(request: pytest.FixtureRequest, telemetry: Captured) -> Iterator[Captured]:
    """llmtally and the httpx/httpx2 instrumentation, instrumented in either order; the httpx instrumentors are
    uninstrumented afterwards so other tests see plain clients."""
    try:
        if request.param == "httpx-first":
            llmtally.uninstrument()
            _instrument_http(telemetry)
            telemetry.instrument()
        else:
            _instrument_http(telemetry)
        yield telemetry
    finally:
        HTTPXClientInstrumentor().uninstrument()
        HTTPX2ClientInstrumentor().uninstrument()


def _status(span: ReadableSpan) -> object:
    """The HTTP status an HTTP span records (old or stable HTTP semconv, as `OTEL_SEMCONV_STABILITY_OPT_IN` says)."""
    attributes = span.attributes or {}
    return attributes.get("http.response.status_code", attributes.get("http.status_code"))


def _traceparent(provider: FakeProvider, index: int = -1) -> tuple[int, int]:
    """(trace id, parent span id) of the `traceparent` the provider received."""
    version, trace_id, parent_id, _flags = provider.requests[index].headers["traceparent"].split("-")
    assert version == "00"
    return int(trace_id, 16), int(parent_id, 16)


def _nested(captured: Captured, provider: FakeProvider, attempts: int = 1) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The only GenAI span and its HTTP spans; checks they nest and that the provider saw the trace context."""
    (genai,) = captured.spans()
    http = captured.spans(HTTPX_SCOPE)
    assert len(http) == attempts, [s.name for s in http]
    assert genai.context is not None
    for span in http:
        assert span.parent is not None and span.parent.span_id == genai.context.span_id
        assert span.context is not None and span.context.trace_id == genai.context.trace_id
        assert span.start_time is not None and genai.start_time is not None and span.start_time >= genai.start_time
    sent = [_traceparent(provider, i) for i in range(-attempts, 0)]
    assert sent == [(genai.context.trace_id, s.context.span_id) for s in http if s.context is not None]
    return genai, http


def test_openai_sdk_call_nests_http_span_and_propagates(both, provider):
    client = openai.OpenAI(base_url=provider.openai_base_url, api_key="sk-test", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    _genai, (http,) = _nested(both, provider)
    assert _status(http) == 200
    assert both.record()["gen_ai.usage.input_tokens"] == CHAT_USAGE["prompt_tokens"]


def test_openai_stream_keeps_usage_and_http_span_ends_with_the_stream(both, provider):
    client = openai.OpenAI(base_url=provider.openai_base_url, api_key="sk-test", max_retries=0)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert chunks and all(c.choices for c in chunks)  # the injected usage chunk is still hidden from the app
    genai, (http,) = _nested(both, provider)
    record = both.record()
    assert record["gen_ai.usage.output_tokens"] == CHAT_USAGE["completion_tokens"]
    assert record["llmtally.stream.outcome"] == "completed"
    assert http.end_time is not None and genai.end_time is not None and http.end_time <= genai.end_time


def test_sdk_retries_are_http_spans_of_one_call(both, provider):
    provider.fail_next(500, times=1)
    client = openai.OpenAI(base_url=provider.openai_base_url, api_key="sk-test", max_retries=2)
    client.with_options(timeout=10).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    _genai, http = _nested(both, provider, attempts=2)
    assert [_status(s) for s in http] == [500, 200]
    assert both.record()["http.request.resend_count"] == 1


def test_anthropic_and_async_openai(both, provider):
    anthropic.Anthropic(base_url=provider.base_url, api_key="sk-ant-test", max_retries=0).messages.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=MESSAGES,  # type: ignore[arg-type]
    )
    _nested(both, provider)

    async def call() -> None:
        async with openai.AsyncOpenAI(base_url=provider.openai_base_url, api_key="sk-test", max_retries=0) as client:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    both.clear()
    asyncio.run(call())
    _nested(both, provider)
    assert len(both.records()) == 1


@pytest.mark.parametrize("library", [httpx2, httpx], ids=["httpx2", "httpx"])
def test_raw_http_call_opened_by_the_http_hook(both, provider, library):
    with library.Client() as client:
        client.post(f"{provider.openai_base_url}/chat/completions", json=CHAT)
        _nested(both, provider)
        both.clear()
        with client.stream("POST", f"{provider.openai_base_url}/chat/completions", json={**CHAT, "stream": True}) as r:
            for _ in r.iter_lines():
                pass
    _nested(both, provider)
    assert both.record()["gen_ai.usage.input_tokens"] == CHAT_USAGE["prompt_tokens"]


def test_non_llm_requests_get_http_spans_only(both, provider):
    with httpx2.Client() as client:
        client.get(f"{provider.base_url}/healthz")
    assert both.spans() == [] and both.records() == []
    (http,) = both.spans(HTTPX_SCOPE)
    assert http.parent is None


def test_launcher_loads_both_and_the_receiver_stores_one_record_per_call(provider, tmp_path: Path):
    """The example app under `opentelemetry-instrument` (every installed instrumentation, httpx's included); what it
    exported is then sent to a real `llmtally serve`, which keeps one record per LLM request and none for HTTP spans."""
    with OTLPSink() as sink:
        run_instrumented_app(provider.base_url, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint)
    spans = [(scope, span) for scope, span in sink.spans()]
    ours = {bytes(span.span_id): span for scope, span in spans if scope == "llmtally"}
    http = [span for scope, span in spans if scope == HTTPX_SCOPE]
    assert len(ours) == APP_CALLS
    to_provider = [s for s in http if attributes(s.attributes).get("http.url", "").startswith(provider.base_url)]
    # Every call but the app's one Bedrock call (boto3 sends with urllib3) goes through httpx.
    assert len(to_provider) >= APP_CALLS - 1, [s.name for s in http]
    for span in to_provider:
        parent = ours.get(bytes(span.parent_span_id))
        assert parent is not None, span.name
        assert span.trace_id == parent.trace_id
    over_httpx = [r for r in provider.requests if "/model/" not in r.path]
    assert len(over_httpx) == len(provider.requests) - 1
    sent = {tuple(r.headers["traceparent"].split("-")[1:3]) for r in over_httpx}
    assert sent == {(s.trace_id.hex(), s.span_id.hex()) for s in to_provider}

    url = f"sqlite:///{tmp_path}/audit.db"
    receiver = Receiver(tmp_path, url).start()
    try:
        for path, requests in (("/v1/traces", sink.traces), ("/v1/logs", sink.logs)):
            for request in requests:
                answer = httpx.post(
                    f"{receiver.http_url}{path}",
                    content=request.SerializeToString(),
                    headers={"content-type": "application/x-protobuf"},
                    timeout=10,
                )
                assert answer.status_code == 200, answer.text
    finally:
        assert receiver.stop() == 0
    store = open_store(url)
    try:
        records = store.records_between(0, 2**63 - 1, limit=100)
    finally:
        store.close()
    assert len(records) == APP_CALLS, " ".join(f"{r.provider}/{r.request_model}/{r.operation}" for r in records)
    assert {r.source for r in records} == {"llmtally"}
