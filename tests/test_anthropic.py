"""The Anthropic SDK hook, driven through the real SDK over HTTP to the fake provider."""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from pydantic import BaseModel

from llmtally.demo.fake_provider import ANTHROPIC_RATELIMIT_HEADERS, ANTHROPIC_USAGE, RESPONSE_MODELS

MESSAGES = [{"role": "user", "content": "hi"}]
PROMPT = (
    ANTHROPIC_USAGE["input_tokens"]
    + ANTHROPIC_USAGE["cache_read_input_tokens"]
    + ANTHROPIC_USAGE["cache_creation_input_tokens"]
)


def client(provider, **kwargs):
    return anthropic.Anthropic(base_url=provider.base_url, api_key="sk-ant-test-secret-0123456789", **kwargs)


def assert_usage(record):
    assert record["gen_ai.usage.input_tokens"] == PROMPT
    assert record["gen_ai.usage.output_tokens"] == ANTHROPIC_USAGE["output_tokens"]
    assert record["gen_ai.usage.cache_read.input_tokens"] == ANTHROPIC_USAGE["cache_read_input_tokens"]
    assert record["gen_ai.usage.cache_creation.input_tokens"] == ANTHROPIC_USAGE["cache_creation_input_tokens"]
    assert record["llmtally.usage.total_tokens"] == PROMPT + ANTHROPIC_USAGE["output_tokens"]
    assert record["llmtally.usage.source"] == "provider"


@pytest.mark.parametrize("native_tracing", [None, "false"])
def test_create_is_one_span_and_one_record_with_sdk_tracing_on_or_off(telemetry, provider, monkeypatch, native_tracing):
    if native_tracing is None:
        monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    else:
        monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", native_tracing)
    message = client(provider).messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
    assert message.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]
    # No span of the SDK's own scope, in any scope: exactly ours.
    assert [s.instrumentation_scope.name for s in telemetry.spans(scope=None)] == ["llmtally"]
    span = telemetry.spans()[0]
    assert span.name == "chat claude-sonnet-4-5"
    record = telemetry.record()
    assert_usage(record)
    assert record["gen_ai.provider.name"] == "anthropic"
    assert record["gen_ai.response.model"] == RESPONSE_MODELS["claude-sonnet-4-5"]
    assert record["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert record["gen_ai.request.max_tokens"] == 64
    assert span.attributes["gen_ai.usage.input_tokens"] == PROMPT


def test_sdk_native_span_comes_back_after_uninstrument(telemetry, provider, monkeypatch):
    """The take-over is ours only while instrumented: the SDK's own span is untouched otherwise."""
    import llmtally

    monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    llmtally.uninstrument()
    client(provider).messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
    scopes = [s.instrumentation_scope.name for s in telemetry.spans(scope=None)]
    assert scopes == ["com.anthropic.sdk.python"]
    assert telemetry.records() == []


def test_stream_helper_and_ratelimits(telemetry, provider):
    with client(provider).messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]
    record = telemetry.record()
    assert_usage(record)
    assert record["gen_ai.request.stream"] is True
    assert record["llmtally.stream.outcome"] == "completed"
    assert record["gen_ai.response.time_to_first_chunk"] > 0
    assert record["llmtally.ratelimit.input_tokens.remaining"] == float(
        ANTHROPIC_RATELIMIT_HEADERS["anthropic-ratelimit-input-tokens-remaining"]
    )
    assert telemetry.metric_sum("completion.time_to_first_token") == 1
    gauges = {s["llmtally.ratelimit.kind"] for s in telemetry.series("completion.ratelimit.remaining")}
    assert gauges == {"requests", "tokens", "input_tokens", "output_tokens"}


def assert_raw_stream_closed_early_is_partial(telemetry, sdk, model: str) -> None:
    """Closes a raw stream of `sdk`'s at its first text: one record, with the input counts of message_start."""
    stream = sdk.messages.create(
        model=model, max_tokens=64, messages=MESSAGES, stream=True, extra_headers={"x-fake-chunks": "20"}
    )
    for event in stream:
        if event.type == "content_block_delta":
            break
    stream.close()
    telemetry.closed_early(PROMPT)  # message_start carried the input counts; the final output count never came


def test_raw_stream_closed_early_is_partial(telemetry, provider):
    assert_raw_stream_closed_early_is_partial(telemetry, client(provider), "claude-haiku-4-5")


def test_beta_messages_and_parse(telemetry, provider):
    c = client(provider)
    c.beta.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)

    class Answer(BaseModel):
        answer: str

    parsed = c.messages.parse(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, output_format=Answer)
    assert parsed.parsed_output is not None
    records = telemetry.records()
    assert len(records) == 2
    for record in records:
        assert_usage(record)
    assert len(telemetry.spans(scope=None)) == 2


def test_async_create_and_stream(telemetry, provider):
    async def main():
        c = anthropic.AsyncAnthropic(base_url=provider.base_url, api_key="sk-ant-test-secret-0123456789")
        await c.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
        async with c.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES) as stream:
            await stream.get_final_message()
        await c.close()

    asyncio.run(main())
    records = telemetry.records()
    assert [r["gen_ai.request.stream"] for r in records] == [False, True]
    for record in records:
        assert_usage(record)


def test_overloaded_then_success_is_one_record_with_a_retry_event(telemetry, provider):
    provider.fail_next(529, retry_after="0")
    client(provider, max_retries=2).messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
    assert len(provider.requests) == 2
    record = telemetry.record()
    assert record["http.request.resend_count"] == 1
    assert "error.type" not in record
    span = telemetry.spans()[0]
    assert [e.name for e in span.events] == ["llmtally.retry"]
    assert span.events[0].attributes["http.response.status_code"] == 529


def test_rate_limit_error_is_counted_as_error(telemetry, provider):
    provider.fail_next(429, times=3, retry_after="0")
    with pytest.raises(anthropic.RateLimitError):
        client(provider, max_retries=0).messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
    record = telemetry.record()
    assert record["error.type"] == "rate_limit"
    assert record["llmtally.usage.source"] == "none"
    assert record["llmtally.error.message"]
    assert telemetry.metric_sum("completion.requests.error", {"error.type": "rate_limit"}) == 1
    assert telemetry.metric_sum("completion.requests.success") == 0


def test_metadata_user_id_is_the_user(telemetry, provider):
    client(provider).messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, metadata={"user_id": "customer-42"}
    )
    assert telemetry.record()["user.id"] == "customer-42"
