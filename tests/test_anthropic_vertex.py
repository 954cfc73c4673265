"""Claude on Vertex AI: `AnthropicVertex` / `AsyncAnthropicVertex` over real HTTP to the fake provider's
`:rawPredict` / `:streamRawPredict` routes, and the same paths through raw HTTP. Named `gcp.vertex_ai`, the model
as sent (`claude-sonnet-4-5@20250929`), priced at Google's rate from genai-prices, one record per call."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx
from test_anthropic import MESSAGES, PROMPT, assert_raw_stream_closed_early_is_partial

from conftest import ToFakeProvider
from llmtally.demo.fake_provider import ANTHROPIC_USAGE
from pricing_helpers import record_cost

MODEL = "claude-sonnet-4-5@20250929"
SNAPSHOT = "claude-sonnet-4-5-20250929"
TOKEN = "ya29.fake-access-token-0123456789"
PROJECT, REGION = "llmtally-test", "us-east5"
PATH = f"/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/{MODEL}"


def client(provider: Any, **kwargs: Any) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        region=REGION, project_id=PROJECT, access_token=TOKEN, base_url=provider.base_url, **kwargs
    )


def assert_vertex_record(attrs: dict[str, Any], record: Any, *, stream: bool) -> None:
    assert attrs["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["gen_ai.response.model"] == SNAPSHOT
    assert attrs["gen_ai.request.stream"] is stream
    assert attrs["gen_ai.usage.input_tokens"] == PROMPT
    assert attrs["gen_ai.usage.output_tokens"] == ANTHROPIC_USAGE["output_tokens"]
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == ANTHROPIC_USAGE["cache_read_input_tokens"]
    assert attrs["llmtally.usage.source"] == "provider"
    assert TOKEN not in str(attrs)
    # Google's price for the model, not Anthropic's.
    assert record.price_source.endswith("google/claude-sonnet-4-5")
    assert record.provider_cost_nusd == record_cost(record, "google", MODEL) > 0


def test_create_is_one_record_named_and_priced_as_vertex(telemetry, provider, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)  # the SDK's own tracing on: still one span
    message = client(provider).messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stop_sequences=["END"])
    assert message.model == SNAPSHOT
    (sent,) = provider.requests
    assert sent.path == PATH + ":rawPredict"
    assert "model" not in sent.json and "anthropic_version" in sent.json  # the model is in the path
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert [s.instrumentation_scope.name for s in telemetry.spans(scope=None)] == ["llmtally"]
    attrs, record = telemetry.stored()
    assert telemetry.spans()[0].name == f"chat {MODEL}"
    assert_vertex_record(attrs, record, stream=False)
    assert attrs["gen_ai.request.stop_sequences"] == ("END",)
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)


def test_streamed_create_and_stream_helper(telemetry, provider):
    c = client(provider)
    list(c.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True))
    with c.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]
    assert [r.path for r in provider.requests] == [PATH + ":streamRawPredict"] * 2
    records = telemetry.records()
    assert len(records) == 2 and len(telemetry.spans(scope=None)) == 2
    for record in records:
        assert record["gen_ai.provider.name"] == "gcp.vertex_ai"
        assert record["gen_ai.request.stream"] is True
        assert record["llmtally.stream.outcome"] == "completed"
        assert record["gen_ai.usage.output_tokens"] == ANTHROPIC_USAGE["output_tokens"]
        assert record["gen_ai.response.time_to_first_chunk"] > 0


def test_streamed_record_is_priced_at_googles_rate(telemetry, provider):
    list(client(provider).messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True))
    attrs, record = telemetry.stored()
    assert_vertex_record(attrs, record, stream=True)


def test_stream_closed_early_is_partial(telemetry, provider):
    assert_raw_stream_closed_early_is_partial(telemetry, client(provider), MODEL)


def test_async_create_and_stream(telemetry, provider):
    async def main() -> None:
        c = anthropic.AsyncAnthropicVertex(
            region=REGION, project_id=PROJECT, access_token=TOKEN, base_url=provider.base_url
        )
        await c.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        async with c.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            await stream.get_final_message()
        await c.close()

    asyncio.run(main())
    records = telemetry.records()
    assert [r["gen_ai.request.stream"] for r in records] == [False, True]
    assert [r.path.rsplit(":", 1)[1] for r in provider.requests] == ["rawPredict", "streamRawPredict"]
    for record in records:
        assert record["gen_ai.provider.name"] == "gcp.vertex_ai"
        assert record["gen_ai.request.model"] == MODEL
        assert record["gen_ai.usage.input_tokens"] == PROMPT
    assert len(telemetry.spans(scope=None)) == 2


def test_retry_is_one_record(telemetry, provider):
    provider.fail_next(529, retry_after="0")
    client(provider, max_retries=2).messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert len(provider.requests) == 2
    record = telemetry.record()
    assert record["http.request.resend_count"] == 1
    assert record["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert "error.type" not in record


def test_error_answer(telemetry, provider):
    provider.fail_next(429)
    try:
        client(provider, max_retries=0).messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    except anthropic.RateLimitError:
        pass
    else:
        raise AssertionError("the SDK did not raise")
    record = telemetry.record()
    assert record["error.type"] == "rate_limit"
    assert record["gen_ai.provider.name"] == "gcp.vertex_ai"


def raw_predict(base_url: str, path: str, **body: Any) -> httpx.Response:
    payload = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 64, "messages": MESSAGES, **body}
    return httpx.post(base_url + path, json=payload, headers={"authorization": f"Bearer {TOKEN}"})


def test_raw_http_through_a_gateway_is_vertex(telemetry, provider):
    """`publishers/anthropic/models/...:rawPredict` is Vertex AI's path: a gateway's host does not make it
    Anthropic's own API."""
    raw_predict(provider.base_url, PATH + ":rawPredict").raise_for_status()
    attrs, record = telemetry.stored()
    assert_vertex_record(attrs, record, stream=False)


def test_raw_http_to_the_regional_host(telemetry, provider):
    """The regional host, `{region}-aiplatform.googleapis.com`, routed here to the fake provider; streamed."""
    payload = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 64, "messages": MESSAGES, "stream": True}
    with httpx.Client(transport=ToFakeProvider(provider)) as http:
        url = f"https://{REGION}-aiplatform.googleapis.com/v1{PATH}:streamRawPredict"
        with http.stream("POST", url, json=payload) as answer:
            list(answer.iter_lines())
    attrs, record = telemetry.stored()
    assert attrs["server.address"] == f"{REGION}-aiplatform.googleapis.com"
    assert attrs["llmtally.stream.outcome"] == "completed"
    assert_vertex_record(attrs, record, stream=True)
