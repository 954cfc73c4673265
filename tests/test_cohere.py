"""Cohere v2 through its own SDK (`cohere.ClientV2` / `AsyncClientV2`, which sends with httpx) over real HTTP to
the fake provider: chat, chat_stream, embed and rerank, errors and the SDK's retries, one record per call, priced
from Cohere's billed units as genai-prices' own Cohere extractor reads them."""

from __future__ import annotations

import asyncio
from typing import Any

import cohere
import genai_prices
import httpx
import pytest

from conftest import SAMPLING, ToFakeProvider, sampling_parameters
from llmtally.demo.fake_cohere import CHAT_USAGE, EMBED_BILLED, FINISH_REASON, REPLY_TEXT, RERANK_BILLED
from pricing_helpers import answer_cost, usage_cost

CHAT_MODEL = "command-a-03-2025"
EMBED_MODEL = "embed-v4.0"
RERANK_MODEL = "rerank-v3.5"
MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
BILLED = CHAT_USAGE["billed_units"]
KEY = "co-test-key-0123456789"


def client(provider: Any, **kwargs: Any) -> cohere.ClientV2:
    return cohere.ClientV2(base_url=provider.base_url, api_key=KEY, **kwargs)


def chat_body() -> dict[str, Any]:
    """A whole chat answer as the fake sends it (its usage is `CHAT_USAGE`)."""
    return {"id": "x", "finish_reason": FINISH_REASON, "usage": CHAT_USAGE}


def assert_chat_usage(record: dict[str, Any]) -> None:
    """The billed counts, not the ones the model saw (which include the prompt template)."""
    assert BILLED["input_tokens"] != CHAT_USAGE["tokens"]["input_tokens"]  # the fixture tells them apart
    assert record["gen_ai.usage.input_tokens"] == BILLED["input_tokens"]
    assert record["gen_ai.usage.output_tokens"] == BILLED["output_tokens"]
    assert record["gen_ai.usage.cache_read.input_tokens"] == CHAT_USAGE["cached_tokens"]
    assert record["llmtally.usage.total_tokens"] == BILLED["input_tokens"] + BILLED["output_tokens"]


def test_chat_is_one_record_with_billed_usage_parameters_and_cost(telemetry, provider):
    answer = client(provider).chat(model=CHAT_MODEL, messages=MESSAGES, **sampling_parameters(top_p="p", top_k="k"))
    assert answer.message.content[0].text == REPLY_TEXT
    attrs, record = telemetry.stored()
    assert telemetry.spans()[0].name == f"chat {CHAT_MODEL}"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "cohere"
    assert attrs["gen_ai.request.model"] == CHAT_MODEL
    assert attrs["gen_ai.response.id"] == answer.id
    assert attrs["gen_ai.response.finish_reasons"] == (FINISH_REASON,)
    assert attrs["gen_ai.request.stream"] is False
    assert attrs["llmtally.usage.source"] == "provider"
    assert_chat_usage(attrs)
    assert {name: attrs.get(name) for name in SAMPLING} == SAMPLING
    assert attrs["llmtally.api_key"].startswith("sha256:") and KEY not in str(attrs)
    assert record.priced and record.price_source.endswith("cohere/command-a")
    assert record.provider_cost_nusd == answer_cost(chat_body(), CHAT_MODEL, "cohere", record)
    # Priced on what the model saw (template included), it would cost more.
    seen = genai_prices.Usage(input_tokens=CHAT_USAGE["tokens"]["input_tokens"], output_tokens=BILLED["output_tokens"])
    assert record.provider_cost_nusd < usage_cost(seen, CHAT_MODEL, "cohere")
    assert telemetry.metric_sum("completion.tokens.prompt", {"gen_ai.provider.name": "cohere"}) == 412


def test_cohere_host_is_named_cohere(telemetry, provider):
    """The SDK's default host, `api.cohere.com`, routed here to the fake provider."""
    co = cohere.ClientV2(api_key=KEY, httpx_client=httpx.Client(transport=ToFakeProvider(provider)))
    co.chat(model=CHAT_MODEL, messages=MESSAGES)
    assert provider.requests[0].headers["host"] == "api.cohere.com"
    record = telemetry.record()
    assert record["server.address"] == "api.cohere.com"
    assert record["gen_ai.provider.name"] == "cohere"


def test_chat_stream(telemetry, provider):
    events = list(client(provider).chat_stream(model=CHAT_MODEL, messages=MESSAGES, temperature=0.5))
    assert events[0].type == "message-start" and events[-1].type == "message-end"
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["llmtally.stream.outcome"] == "completed"
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["gen_ai.response.id"] == events[0].id
    assert attrs["gen_ai.response.finish_reasons"] == (FINISH_REASON,)
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0
    assert attrs["gen_ai.request.temperature"] == 0.5
    assert_chat_usage(attrs)
    assert record.provider_cost_nusd == answer_cost(chat_body(), CHAT_MODEL, "cohere", record)


def test_chat_stream_closed_early_has_no_usage_and_no_price(telemetry, provider):
    """Cohere reports usage in the stream's last event only: closed before it, the record says the counts are
    unknown (never a guess), and the receiver flags it unpriced, never $0."""
    stream = client(provider).chat_stream(
        model=CHAT_MODEL, messages=MESSAGES, request_options={"additional_headers": {"x-fake-chunks": "20"}}
    )
    for event in stream:
        if event.type == "content-delta":
            break
    stream.close()
    attrs, record = telemetry.stored()
    assert attrs["llmtally.stream.outcome"] == "closed_early"
    assert attrs["llmtally.usage.source"] == "none"
    assert "gen_ai.usage.input_tokens" not in attrs and "error.type" not in attrs
    assert attrs["gen_ai.response.id"]  # message-start was read
    assert not record.priced and record.provider_cost_nusd is None


def test_stream_error_event(telemetry, provider):
    headers = {"x-fake-stream-error": "the model failed to generate a response"}
    events = list(
        client(provider).chat_stream(
            model=CHAT_MODEL, messages=MESSAGES, request_options={"additional_headers": headers}
        )
    )
    assert events[-1].delta.finish_reason == "ERROR"
    record = telemetry.record()
    assert record["error.type"] == "stream_error"
    assert record["llmtally.error.message"] == "the model failed to generate a response"
    assert record["gen_ai.response.finish_reasons"] == ("ERROR",)
    assert record["http.response.status_code"] == 200
    assert telemetry.metric_sum("completion.requests.error", {"gen_ai.provider.name": "cohere"}) == 1


def test_embed(telemetry, provider):
    answer = client(provider).embed(
        model=EMBED_MODEL, texts=["hello", "goodbye"], input_type="search_document", embedding_types=["float"]
    )
    assert len(answer.embeddings.float_ or []) == 2
    attrs, record = telemetry.stored()
    assert telemetry.spans()[0].name == f"embeddings {EMBED_MODEL}"
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.provider.name"] == "cohere"
    assert attrs["gen_ai.response.id"] == answer.id
    assert attrs["gen_ai.request.encoding_formats"] == ("float",)
    assert attrs["gen_ai.usage.input_tokens"] == EMBED_BILLED["input_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == 0
    body = {"meta": {"billed_units": EMBED_BILLED}}
    assert record.priced
    assert record.provider_cost_nusd == answer_cost(body, EMBED_MODEL, "cohere", record, flavor="embeddings") > 0


def test_rerank_counts_searches_and_is_flagged_unpriced(telemetry, provider):
    """genai-prices has no price for Cohere's rerank models: the record is unpriced, never $0."""
    answer = client(provider).rerank(model=RERANK_MODEL, query="hi", documents=["a", "b", "c"], top_n=2)
    assert len(answer.results) == 2
    attrs, record = telemetry.stored()
    assert telemetry.spans()[0].name == f"rerank {RERANK_MODEL}"
    assert attrs["gen_ai.operation.name"] == "rerank"
    assert attrs["gen_ai.provider.name"] == "cohere"
    assert attrs["gen_ai.response.id"] == answer.id
    assert attrs["llmtally.usage.unit.rerank_searches"] == RERANK_BILLED["search_units"]
    assert attrs["gen_ai.usage.input_tokens"] == 0 and attrs["llmtally.usage.source"] == "provider"
    assert not record.priced and record.provider_cost_nusd is None and record.price_source == "unpriced"


def test_async_client(telemetry, provider):
    async def main() -> list[Any]:
        co = cohere.AsyncClientV2(base_url=provider.base_url, api_key=KEY)
        await co.chat(model=CHAT_MODEL, messages=MESSAGES, max_tokens=64)
        events = [e async for e in co.chat_stream(model=CHAT_MODEL, messages=MESSAGES)]
        await co.embed(model=EMBED_MODEL, texts=["a"], input_type="search_query", embedding_types=["int8"])
        await co.rerank(model=RERANK_MODEL, query="q", documents=["a", "b"])
        return events

    events = asyncio.run(main())
    assert events[-1].type == "message-end"
    records = telemetry.records()
    assert [r["gen_ai.operation.name"] for r in records] == ["chat", "chat", "embeddings", "rerank"]
    assert [r["gen_ai.request.stream"] for r in records] == [False, True, False, False]
    for record in records[:2]:
        assert_chat_usage(record)
        assert record["gen_ai.provider.name"] == "cohere"
    assert records[0]["gen_ai.request.max_tokens"] == 64
    assert records[1]["llmtally.stream.outcome"] == "completed"
    assert records[2]["gen_ai.request.encoding_formats"] == ("int8",)
    assert records[3]["llmtally.usage.unit.rerank_searches"] == 1
    assert len(telemetry.spans(scope=None)) == 4


def test_error_answer(telemetry, provider):
    provider.fail_next(400)
    with pytest.raises(cohere.BadRequestError):
        client(provider).chat(model=CHAT_MODEL, messages=MESSAGES)
    record = telemetry.record()
    assert record["error.type"] == "invalid_request"
    assert record["http.response.status_code"] == 400
    assert record["llmtally.error.message"].startswith("invalid request: message must be")
    assert record["llmtally.usage.source"] == "none"


def test_rate_limited_stream(telemetry, provider):
    """Streams are not retried by the SDK: one attempt, one record."""
    provider.fail_next(429)
    with pytest.raises(cohere.TooManyRequestsError):
        list(client(provider).chat_stream(model=CHAT_MODEL, messages=MESSAGES))
    record = telemetry.record()
    assert record["error.type"] == "rate_limit"
    assert record["gen_ai.request.stream"] is True
    assert "llmtally.stream.outcome" not in record  # an error answer to a streamed request is no stream
    assert "You are using a Trial key" in record["llmtally.error.message"]


def test_sdk_retries_are_one_record(telemetry, provider):
    provider.fail_next(503, retry_after="1")
    answer = client(provider).chat(model=CHAT_MODEL, messages=MESSAGES)
    assert answer.finish_reason == FINISH_REASON
    assert len(provider.requests) == 2
    record = telemetry.record()
    assert record["http.request.resend_count"] == 1
    assert "error.type" not in record
    assert_chat_usage(record)
    (span,) = telemetry.spans()
    assert [e.name for e in span.events] == ["llmtally.retry"]
    assert span.events[0].attributes["http.response.status_code"] == 503


def test_sdk_retries_exhausted_are_one_failed_record(telemetry, provider):
    provider.fail_next(429, times=2, retry_after="1")

    async def main() -> None:
        co = cohere.AsyncClientV2(base_url=provider.base_url, api_key=KEY)
        await co.rerank(model=RERANK_MODEL, query="q", documents=["a"], request_options={"max_retries": 1})

    with pytest.raises(cohere.TooManyRequestsError):
        asyncio.run(main())
    assert len(provider.requests) == 2
    record = telemetry.record()
    assert record["error.type"] == "rate_limit"
    assert record["http.request.resend_count"] == 1
    assert record["gen_ai.operation.name"] == "rerank"


def test_recorded_by_the_http_hook_alone(telemetry, provider):
    """The Cohere SDK has no hook of its own: `llmtally_http` records it, and nothing does while it is off."""
    telemetry.reinstrument(hooks=("openai", "anthropic"))
    provider.fail_next(503, retry_after="1")
    client(provider).chat(model=CHAT_MODEL, messages=MESSAGES)
    assert telemetry.records() == []
    telemetry.reinstrument(hooks=("http",))
    client(provider).chat(model=CHAT_MODEL, messages=MESSAGES)
    assert telemetry.record()["gen_ai.provider.name"] == "cohere"


def test_content_capture(telemetry, provider):
    telemetry.reinstrument(capture_content=True)
    co = client(provider)
    co.chat(model=CHAT_MODEL, messages=MESSAGES)
    list(
        co.chat_stream(
            model=CHAT_MODEL, messages=MESSAGES, request_options={"additional_headers": {"x-fake-chunks": "3"}}
        )
    )
    whole, streamed = telemetry.records()
    for record in (whole, streamed):
        assert "Say hello" in record["gen_ai.input.messages"]
    assert f'"content": "{REPLY_TEXT}"' in whole["gen_ai.output.messages"]
    assert '"content": "Hello from the"' in streamed["gen_ai.output.messages"]
    assert '"finish_reason": "COMPLETE"' in streamed["gen_ai.output.messages"]
