"""The OpenAI SDK hook, driven through the real SDK (sync and async clients) over HTTP to the fake provider.

Every SDK call must become exactly one record (the `llmtally.completion` audit event), exactly one span (of scope
`llmtally`, and no span of any other scope) and its metrics, with the exact token counts the fake provider sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel

import llmtally
from llmtally.demo.fake_provider import (
    CHAT_USAGE,
    COMPLETIONS_USAGE,
    EMBEDDINGS_USAGE,
    OPENAI_RATELIMIT_HEADERS,
    RESPONSE_MODELS,
    RESPONSES_USAGE,
    reply_text,
)

API_KEY = "sk-test-0123456789abcdefghijklmnop"
MESSAGES = [{"role": "user", "content": "hi"}]
CHAT_MODEL = "gpt-4o-mini"
RESPONSES_MODEL = "gpt-4.1"
COMPLETIONS_MODEL = "gpt-3.5-turbo-instruct"
EMBEDDINGS_MODEL = "text-embedding-3-small"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]

# What a record must say for each route's usage constant (input includes cache reads, output includes reasoning).
CHAT_TOKENS = {
    "gen_ai.usage.input_tokens": CHAT_USAGE["prompt_tokens"],
    "gen_ai.usage.output_tokens": CHAT_USAGE["completion_tokens"],
    "llmtally.usage.total_tokens": CHAT_USAGE["total_tokens"],
    "gen_ai.usage.cache_read.input_tokens": CHAT_USAGE["prompt_tokens_details"]["cached_tokens"],
    "gen_ai.usage.cache_creation.input_tokens": 0,
    "gen_ai.usage.reasoning.output_tokens": CHAT_USAGE["completion_tokens_details"]["reasoning_tokens"],
}
RESPONSES_TOKENS = {
    "gen_ai.usage.input_tokens": RESPONSES_USAGE["input_tokens"],
    "gen_ai.usage.output_tokens": RESPONSES_USAGE["output_tokens"],
    "llmtally.usage.total_tokens": RESPONSES_USAGE["total_tokens"],
    "gen_ai.usage.cache_read.input_tokens": RESPONSES_USAGE["input_tokens_details"]["cached_tokens"],
    "gen_ai.usage.cache_creation.input_tokens": RESPONSES_USAGE["input_tokens_details"]["cache_write_tokens"],
    "gen_ai.usage.reasoning.output_tokens": RESPONSES_USAGE["output_tokens_details"]["reasoning_tokens"],
}
COMPLETIONS_TOKENS = {
    "gen_ai.usage.input_tokens": COMPLETIONS_USAGE["prompt_tokens"],
    "gen_ai.usage.output_tokens": COMPLETIONS_USAGE["completion_tokens"],
    "llmtally.usage.total_tokens": COMPLETIONS_USAGE["total_tokens"],
    "gen_ai.usage.cache_read.input_tokens": 0,
    "gen_ai.usage.cache_creation.input_tokens": 0,
    "gen_ai.usage.reasoning.output_tokens": 0,
}
EMBEDDINGS_TOKENS = {
    "gen_ai.usage.input_tokens": EMBEDDINGS_USAGE["prompt_tokens"],
    "gen_ai.usage.output_tokens": 0,
    "llmtally.usage.total_tokens": EMBEDDINGS_USAGE["total_tokens"],
    "gen_ai.usage.cache_read.input_tokens": 0,
    "gen_ai.usage.cache_creation.input_tokens": 0,
    "gen_ai.usage.reasoning.output_tokens": 0,
}
USAGE_KEYS = tuple(CHAT_TOKENS)


class Answer(BaseModel):
    answer: str


def client(provider, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=provider.openai_base_url, api_key=API_KEY, **kwargs)


def async_client(provider, **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=provider.openai_base_url, api_key=API_KEY, **kwargs)


def assert_tokens(record: dict[str, Any], expected: dict[str, int]) -> None:
    assert {k: record.get(k) for k in expected} == expected
    assert record["llmtally.usage.source"] == "provider"


def assert_no_tokens(record: dict[str, Any]) -> None:
    assert not any(k in record for k in USAGE_KEYS), record


def only_record(telemetry) -> tuple[dict[str, Any], Any]:
    """The one record and the one span: no other record, no other span of any scope."""
    record = telemetry.record()
    spans = telemetry.spans(scope=None)
    assert [s.instrumentation_scope.name for s in spans] == ["llmtally"], [s.name for s in spans]
    return record, spans[0]


def assert_call(
    record: dict[str, Any],
    span: Any,
    *,
    operation: str,
    model: str,
    stream: bool,
    finish: tuple[str, ...] | None,
    response_model: str | None = None,
) -> None:
    assert record["gen_ai.provider.name"] == "openai"
    assert record["gen_ai.operation.name"] == operation
    assert record["gen_ai.request.model"] == model
    assert record["gen_ai.response.model"] == (response_model or RESPONSE_MODELS.get(model, model))
    assert record["gen_ai.request.stream"] is stream
    if finish is None:
        assert "gen_ai.response.finish_reasons" not in record
    else:
        assert tuple(record["gen_ai.response.finish_reasons"]) == finish
    assert record["http.response.status_code"] == 200
    assert "error.type" not in record
    assert "http.request.resend_count" not in record
    assert record["llmtally.provider.request_id"].startswith("req_")
    assert span.name == f"{operation} {model}"
    assert span.status.is_ok
    # The span carries the record's attributes.
    for key in ("gen_ai.operation.name", "gen_ai.request.model", "gen_ai.usage.input_tokens"):
        if key in record:
            assert span.attributes[key] == record[key]
    if stream:
        assert record["llmtally.stream.outcome"] == "completed"
        assert record["gen_ai.response.time_to_first_chunk"] > 0
    else:
        assert "llmtally.stream.outcome" not in record
        assert "gen_ai.response.time_to_first_chunk" not in record


def assert_counted_once(telemetry, *, success: bool = True) -> None:
    assert telemetry.metric_sum("completion.requests.total") == 1
    assert telemetry.metric_sum("completion.requests.success") == (1 if success else 0)
    assert telemetry.metric_sum("completion.requests.error") == (0 if success else 1)
    assert telemetry.metric_sum("completion.duration") == 1
    assert telemetry.metric_sum("gen_ai.client.operation.duration") == 1


def chunk_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


# --- chat.completions ------------------------------------------------------------------------------------------


def test_chat_create(telemetry, provider):
    with client(provider) as c:
        completion = c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=64, temperature=0.5)
    assert completion.usage.prompt_tokens == CHAT_USAGE["prompt_tokens"]
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=CHAT_MODEL, stream=False, finish=("stop",))
    assert_tokens(record, CHAT_TOKENS)
    assert record["gen_ai.response.id"] == completion.id
    assert record["gen_ai.request.max_tokens"] == 64
    assert record["gen_ai.request.temperature"] == 0.5
    assert record["server.address"] == "127.0.0.1"
    assert span.attributes["gen_ai.usage.output_tokens"] == CHAT_USAGE["completion_tokens"]
    assert_counted_once(telemetry)
    # The request went out untouched.
    assert "stream_options" not in provider.requests[-1].json
    assert len(provider.requests) == 1


def test_chat_stream_fully_iterated_hides_the_injected_usage_chunk(telemetry, provider):
    with client(provider) as c:
        stream = c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True)
        chunks = list(stream)
    # llmtally asked for usage on the app's behalf, and the app never sees the extra chunk.
    assert provider.requests[-1].json["stream_options"] == {"include_usage": True}
    assert chunks and all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == reply_text()
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=CHAT_MODEL, stream=True, finish=("stop",))
    assert_tokens(record, CHAT_TOKENS)
    assert record["gen_ai.response.id"] == chunks[0].id
    assert telemetry.metric_sum("completion.time_to_first_token") == 1
    assert_counted_once(telemetry)


def test_chat_stream_with_the_apps_own_include_usage_sees_the_usage_chunk(telemetry, provider):
    with client(provider) as c:
        stream = c.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == CHAT_USAGE["prompt_tokens"]
    assert chunks[-1].usage.completion_tokens == CHAT_USAGE["completion_tokens"]
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=CHAT_MODEL, stream=True, finish=("stop",))
    assert_tokens(record, CHAT_TOKENS)
    assert_counted_once(telemetry)


def test_chat_parse_with_a_pydantic_response_format(telemetry, provider):
    with client(provider) as c:
        completion = c.chat.completions.parse(model=CHAT_MODEL, messages=MESSAGES, response_format=Answer)
    assert completion.choices[0].message.parsed == Answer(answer="42")
    assert provider.requests[-1].json["response_format"]["type"] == "json_schema"
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=CHAT_MODEL, stream=False, finish=("stop",))
    assert_tokens(record, CHAT_TOKENS)
    assert_counted_once(telemetry)


def test_chat_stream_helper_get_final_completion(telemetry, provider):
    with (
        client(provider) as c,
        c.chat.completions.stream(model=CHAT_MODEL, messages=MESSAGES, response_format=Answer) as stream,
    ):
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == Answer(answer="42")
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=CHAT_MODEL, stream=True, finish=("stop",))
    assert_tokens(record, CHAT_TOKENS)
    assert telemetry.metric_sum("completion.time_to_first_token") == 1
    assert_counted_once(telemetry)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_chat_function_calling(telemetry, provider, stream):
    with client(provider) as c:
        if stream:
            chunks = list(c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, tools=TOOLS, stream=True))
            names = [
                call.function.name
                for chunk in chunks
                for choice in chunk.choices
                for call in choice.delta.tool_calls or ()
                if call.function and call.function.name
            ]
            assert names == ["get_weather"]
            assert all(chunk.choices for chunk in chunks)
        else:
            completion = c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, tools=TOOLS)
            call = completion.choices[0].message.tool_calls[0]
            assert call.function.name == "get_weather"
            assert json.loads(call.function.arguments) == {"city": "42"}
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=CHAT_MODEL, stream=stream, finish=("tool_calls",))
    assert_tokens(record, CHAT_TOKENS)
    assert_counted_once(telemetry)


# --- responses -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_responses_create(telemetry, provider, stream):
    with client(provider) as c:
        if stream:
            events = list(c.responses.create(model=RESPONSES_MODEL, input="hi", stream=True, max_output_tokens=99))
            assert events[-1].type == "response.completed"
            response = events[-1].response
        else:
            response = c.responses.create(model=RESPONSES_MODEL, input="hi", max_output_tokens=99)
    assert response.usage.input_tokens == RESPONSES_USAGE["input_tokens"]
    assert "stream_options" not in provider.requests[-1].json
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=RESPONSES_MODEL, stream=stream, finish=("completed",))
    assert_tokens(record, RESPONSES_TOKENS)
    assert record["gen_ai.response.id"] == response.id
    assert record["gen_ai.request.max_tokens"] == 99
    assert_counted_once(telemetry)


def test_responses_reasoning_effort_format_and_tool_count_are_read_never_their_content(telemetry, provider):
    tools: Any = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]
    text: Any = {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}}}
    with client(provider) as c:
        c.responses.create(model=RESPONSES_MODEL, input="hi", reasoning={"effort": "high"}, text=text, tools=tools)
    record, _ = only_record(telemetry)
    assert record["gen_ai.request.reasoning_effort"] == "high"
    assert record["llmtally.request.response_format"] == "json_schema"
    assert record["llmtally.request.tool_count"] == 1
    assert "lookup" not in json.dumps(record, default=str) and "answer" not in json.dumps(record, default=str)


def test_responses_stream_helper_get_final_response(telemetry, provider):
    with client(provider) as c, c.responses.stream(model=RESPONSES_MODEL, input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == reply_text()
    assert final.usage.output_tokens == RESPONSES_USAGE["output_tokens"]
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=RESPONSES_MODEL, stream=True, finish=("completed",))
    assert_tokens(record, RESPONSES_TOKENS)
    assert record["gen_ai.response.id"] == final.id
    assert_counted_once(telemetry)


def test_responses_parse_with_text_format(telemetry, provider):
    with client(provider) as c:
        response = c.responses.parse(model=RESPONSES_MODEL, input="hi", text_format=Answer)
    assert response.output_parsed == Answer(answer="42")
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=RESPONSES_MODEL, stream=False, finish=("completed",))
    assert_tokens(record, RESPONSES_TOKENS)
    assert_counted_once(telemetry)


# --- embeddings and legacy completions -------------------------------------------------------------------------


def test_embeddings_create(telemetry, provider):
    with client(provider) as c:
        result = c.embeddings.create(model=EMBEDDINGS_MODEL, input=["a", "b"])
    assert len(result.data) == 2
    record, span = only_record(telemetry)
    assert_call(record, span, operation="embeddings", model=EMBEDDINGS_MODEL, stream=False, finish=None)
    assert_tokens(record, EMBEDDINGS_TOKENS)
    # The SDK asks for base64 by default; the record says so.
    assert tuple(record["gen_ai.request.encoding_formats"]) == (provider.requests[-1].json["encoding_format"],)
    assert_counted_once(telemetry)
    assert telemetry.metric_sum("completion.tokens.prompt") == EMBEDDINGS_USAGE["prompt_tokens"]
    assert telemetry.metric_sum("completion.tokens.completion") == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_legacy_completions_create(telemetry, provider, stream):
    with client(provider) as c:
        if stream:
            chunks = list(c.completions.create(model=COMPLETIONS_MODEL, prompt="Say hi", stream=True))
            assert all(chunk.choices for chunk in chunks)
            assert "".join(chunk.choices[0].text for chunk in chunks) == reply_text()
            assert provider.requests[-1].json["stream_options"] == {"include_usage": True}
        else:
            completion = c.completions.create(model=COMPLETIONS_MODEL, prompt="Say hi")
            assert completion.usage.total_tokens == COMPLETIONS_USAGE["total_tokens"]
    record, span = only_record(telemetry)
    assert_call(record, span, operation="text_completion", model=COMPLETIONS_MODEL, stream=stream, finish=("stop",))
    assert_tokens(record, COMPLETIONS_TOKENS)
    assert_counted_once(telemetry)


# --- with_raw_response and with_streaming_response -------------------------------------------------------------


def test_with_raw_response_then_parse(telemetry, provider):
    with client(provider) as c:
        raw = c.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=MESSAGES)
        assert raw.headers["x-ratelimit-limit-requests"] == OPENAI_RATELIMIT_HEADERS["x-ratelimit-limit-requests"]
        completion = raw.parse()
    assert completion.usage.prompt_tokens == CHAT_USAGE["prompt_tokens"]
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=CHAT_MODEL, stream=False, finish=("stop",))
    assert_tokens(record, CHAT_TOKENS)
    assert record["llmtally.provider.request_id"] == raw.headers["x-request-id"]
    assert_counted_once(telemetry)


def test_with_raw_response_stream(telemetry, provider):
    with client(provider) as c:
        raw = c.responses.with_raw_response.create(model=RESPONSES_MODEL, input="hi", stream=True)
        events = list(raw.parse())
    assert events[-1].type == "response.completed"
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=RESPONSES_MODEL, stream=True, finish=("completed",))
    assert_tokens(record, RESPONSES_TOKENS)
    assert_counted_once(telemetry)


def test_with_streaming_response_iter_lines(telemetry, provider):
    with (
        client(provider) as c,
        c.chat.completions.with_streaming_response.create(model=CHAT_MODEL, messages=MESSAGES, stream=True) as response,
    ):
        assert telemetry.records() == []  # the body has not been read yet
        chunks = chunk_lines(list(response.iter_lines()))
    assert chunks and all(chunk["choices"] for chunk in chunks)
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=CHAT_MODEL, stream=True, finish=("stop",))
    assert_tokens(record, CHAT_TOKENS)
    assert_counted_once(telemetry)


def test_with_streaming_response_parse(telemetry, provider):
    with (
        client(provider) as c,
        c.embeddings.with_streaming_response.create(model=EMBEDDINGS_MODEL, input="a") as response,
    ):
        result = response.parse()
    assert len(result.data) == 1
    record, span = only_record(telemetry)
    assert_call(record, span, operation="embeddings", model=EMBEDDINGS_MODEL, stream=False, finish=None)
    assert_tokens(record, EMBEDDINGS_TOKENS)
    assert_counted_once(telemetry)


# --- stream outcomes -------------------------------------------------------------------------------------------


def test_stream_closed_early_is_not_an_error(telemetry, provider):
    with client(provider) as c:
        stream = c.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, stream=True, extra_headers={"x-fake-chunks": "30"}
        )
        for seen, _ in enumerate(stream, 1):
            if seen == 2:
                break
        assert telemetry.records() == []  # still open: the app may go on reading
        stream.close()
    record, span = only_record(telemetry)
    assert record["llmtally.stream.outcome"] == "closed_early"
    assert record["gen_ai.request.stream"] is True
    # The usage chunk comes last: it never arrived, and tokens are never guessed.
    assert record["llmtally.usage.source"] == "none"
    assert_no_tokens(record)
    assert "error.type" not in record
    assert span.status.is_ok
    assert telemetry.metric_sum("completion.requests.error") == 0
    assert telemetry.metric_sum("completion.requests.success") == 1
    assert telemetry.metric_sum("completion.tokens.prompt") == 0


def test_responses_stream_closed_early_keeps_no_guessed_usage(telemetry, provider):
    with client(provider) as c:
        stream = c.responses.create(
            model=RESPONSES_MODEL, input="hi", stream=True, extra_headers={"x-fake-chunks": "30"}
        )
        for event in stream:
            if event.type == "response.output_text.delta":
                break
        stream.close()
    record, _ = only_record(telemetry)
    assert record["llmtally.stream.outcome"] == "closed_early"
    assert record["llmtally.usage.source"] == "none"
    assert_no_tokens(record)
    assert "error.type" not in record


# --- errors and retries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception", "error_type"),
    [
        (500, openai.InternalServerError, "server_error"),
        (400, openai.BadRequestError, "invalid_request"),
        (401, openai.AuthenticationError, "auth_error"),
        (404, openai.NotFoundError, "model_error"),
        (429, openai.RateLimitError, "rate_limit"),
    ],
)
def test_error_status(telemetry, provider, status, exception, error_type):
    provider.fail_next(status)
    with client(provider, max_retries=0) as c, pytest.raises(exception):
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert len(provider.requests) == 1
    record, span = only_record(telemetry)
    assert record["error.type"] == error_type
    assert record["http.response.status_code"] == status
    assert record["llmtally.error.message"]
    assert record["llmtally.usage.source"] == "none"
    assert_no_tokens(record)
    assert not span.status.is_ok
    assert span.attributes["error.type"] == error_type
    assert telemetry.metric_sum("completion.requests.error", {"error.type": error_type}) == 1
    assert telemetry.metric_sum("completion.requests.success") == 0
    assert telemetry.metric_sum("completion.requests.total") == 1


def test_error_message_is_the_providers(telemetry, provider):
    provider.fail_next(500)
    with client(provider, max_retries=0) as c, pytest.raises(openai.InternalServerError) as caught:
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    record = telemetry.record()
    assert record["llmtally.error.message"] == caught.value.body["message"]


def test_rate_limited_once_then_success_is_one_record_with_a_retry_event(telemetry, provider):
    provider.fail_next(429, retry_after="0")
    with client(provider, max_retries=2) as c:
        completion = c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert completion.usage.prompt_tokens == CHAT_USAGE["prompt_tokens"]
    assert len(provider.requests) == 2
    record, span = only_record(telemetry)
    assert "error.type" not in record
    assert record["http.request.resend_count"] == 1
    assert record["http.response.status_code"] == 200
    assert_tokens(record, CHAT_TOKENS)
    assert [e.name for e in span.events] == ["llmtally.retry"]
    assert span.events[0].attributes["http.response.status_code"] == 429
    assert span.events[0].attributes["error.type"] == "rate_limit"
    events = json.loads(record["llmtally.events"])
    assert len(events) == 1
    assert events[0]["name"] == "retry"
    assert events[0]["http.response.status_code"] == 429
    assert_counted_once(telemetry)


def test_rate_limited_on_every_attempt_is_one_error_record(telemetry, provider):
    provider.fail_next(429, times=3, retry_after="0")
    with client(provider, max_retries=2) as c, pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert len(provider.requests) == 3
    record, span = only_record(telemetry)
    assert record["error.type"] == "rate_limit"
    assert record["http.request.resend_count"] == 2
    assert [e.attributes["http.response.status_code"] for e in span.events] == [429, 429]
    assert_counted_once(telemetry, success=False)


def test_timeout(telemetry, provider):
    provider.hang_next(2)
    with client(provider, max_retries=0, timeout=0.3) as c, pytest.raises(openai.APITimeoutError):
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    record, span = only_record(telemetry)
    assert record["error.type"] == "timeout"
    assert "http.response.status_code" not in record
    assert record["llmtally.error.message"]
    assert_no_tokens(record)
    assert not span.status.is_ok
    assert telemetry.metric_sum("completion.requests.error", {"error.type": "timeout"}) == 1
    assert telemetry.metric_sum("completion.requests.success") == 0


def test_connection_dropped(telemetry, provider):
    provider.drop_next()
    with client(provider, max_retries=0) as c, pytest.raises(openai.APIConnectionError):
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    record, span = only_record(telemetry)
    assert record["error.type"] == "connection_error"
    assert "http.response.status_code" not in record
    assert_no_tokens(record)
    assert not span.status.is_ok
    assert telemetry.metric_sum("completion.requests.error", {"error.type": "connection_error"}) == 1
    assert telemetry.metric_sum("completion.requests.success") == 0


def test_connection_dropped_once_then_success(telemetry, provider):
    provider.drop_next()
    with client(provider, max_retries=1) as c:
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert len(provider.requests) == 2
    record, span = only_record(telemetry)
    assert "error.type" not in record
    assert record["http.request.resend_count"] == 1
    assert_tokens(record, CHAT_TOKENS)
    assert [e.name for e in span.events] == ["llmtally.retry"]
    assert "http.response.status_code" not in span.events[0].attributes
    assert len(json.loads(record["llmtally.events"])) == 1
    assert_counted_once(telemetry)


# --- rate limits -----------------------------------------------------------------------------------------------


def test_ratelimit_headers(telemetry, provider):
    with client(provider) as c:
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    record = telemetry.record()
    headers = OPENAI_RATELIMIT_HEADERS
    for kind in ("requests", "tokens"):
        assert record[f"llmtally.ratelimit.{kind}.limit"] == float(headers[f"x-ratelimit-limit-{kind}"])
        assert record[f"llmtally.ratelimit.{kind}.remaining"] == float(headers[f"x-ratelimit-remaining-{kind}"])
        assert record[f"llmtally.ratelimit.{kind}.reset"] == headers[f"x-ratelimit-reset-{kind}"]
    for gauge in ("completion.ratelimit.remaining", "completion.ratelimit.limit"):
        series = telemetry.series(gauge)
        assert sorted(s["llmtally.ratelimit.kind"] for s in series) == ["requests", "tokens"]
    remaining = {
        dict(p.attributes)["llmtally.ratelimit.kind"]: p.value
        for p in telemetry.metrics()["completion.ratelimit.remaining"].data.data_points
    }
    assert remaining == {
        "requests": float(headers["x-ratelimit-remaining-requests"]),
        "tokens": float(headers["x-ratelimit-remaining-tokens"]),
    }


# --- attribution -----------------------------------------------------------------------------------------------

ALL_METRICS = (
    "completion.requests.total",
    "completion.requests.success",
    "completion.tokens.prompt",
    "completion.tokens.completion",
    "completion.tokens.total",
    "completion.duration",
    "completion.ratelimit.remaining",
    "gen_ai.client.operation.duration",
    "gen_ai.client.token.usage",
)


def test_attribution_on_the_record_but_only_low_cardinality_on_metrics(telemetry, provider):
    with client(provider) as c, llmtally.attributes(user="u1", feature="f1", department="d1", api_key="team-a"):
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, user="end-user-7")
    record, span = only_record(telemetry)
    assert record["user.id"] == "u1"  # the attribution wins over the request's own field
    assert record["llmtally.feature"] == "f1"
    assert record["llmtally.department"] == "d1"
    assert record["llmtally.api_key"] == "team-a"
    assert span.attributes["user.id"] == "u1"
    for name in ("completion.requests.total", "completion.tokens.prompt", "completion.duration"):
        series = telemetry.series(name)
        assert series and all(s["llmtally.feature"] == "f1" and s["llmtally.department"] == "d1" for s in series)
    for name in ALL_METRICS:
        series = telemetry.series(name)
        assert series, name
        for attrs in series:
            assert "user.id" not in attrs and "llmtally.api_key" not in attrs, (name, attrs)
    assert telemetry.metric_sum("completion.requests.total", {"llmtally.feature": "f1"}) == 1


def test_attribution_is_scoped_to_the_block(telemetry, provider):
    with client(provider) as c:
        with llmtally.attributes(feature="inside"):
            c.embeddings.create(model=EMBEDDINGS_MODEL, input="a")
        c.embeddings.create(model=EMBEDDINGS_MODEL, input="a")
    records = telemetry.records()
    assert [r.get("llmtally.feature") for r in records] == ["inside", None]


def test_sdk_user_field_is_the_user_without_attribution(telemetry, provider):
    with client(provider) as c:
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, user="end-user-7")
    assert telemetry.record()["user.id"] == "end-user-7"
    for name in ALL_METRICS:
        assert all("user.id" not in attrs for attrs in telemetry.series(name)), name


def test_api_key_is_hashed_and_never_recorded(telemetry, provider):
    with client(provider) as c:
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    record, span = only_record(telemetry)
    key_id = record["llmtally.api_key"]
    assert key_id == "sha256:" + hashlib.sha256(API_KEY.encode()).hexdigest()[:12]
    assert len(key_id) == len("sha256:") + 12
    everything = json.dumps([record, dict(span.attributes)], default=str)
    assert API_KEY not in everything
    assert API_KEY[:20] not in everything
    for name in ALL_METRICS:
        assert all("llmtally.api_key" not in attrs for attrs in telemetry.series(name)), name


def test_different_keys_have_different_ids(telemetry, provider):
    with client(provider) as c:
        c.embeddings.create(model=EMBEDDINGS_MODEL, input="a")
    with openai.OpenAI(base_url=provider.openai_base_url, api_key="sk-other-key-9876543210") as other:
        other.embeddings.create(model=EMBEDDINGS_MODEL, input="a")
    ids = [r["llmtally.api_key"] for r in telemetry.records()]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert all(i.startswith("sha256:") for i in ids)


# --- metrics ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("surface", "usage"),
    [
        ("chat", CHAT_TOKENS),
        ("responses", RESPONSES_TOKENS),
        ("completions", COMPLETIONS_TOKENS),
    ],
)
def test_token_metrics_equal_the_usage(telemetry, provider, surface, usage):
    with client(provider) as c:
        if surface == "chat":
            c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
        elif surface == "responses":
            c.responses.create(model=RESPONSES_MODEL, input="hi")
        else:
            c.completions.create(model=COMPLETIONS_MODEL, prompt="hi")
    assert telemetry.metric_sum("completion.tokens.prompt") == usage["gen_ai.usage.input_tokens"]
    assert telemetry.metric_sum("completion.tokens.completion") == usage["gen_ai.usage.output_tokens"]
    assert telemetry.metric_sum("completion.tokens.total") == usage["llmtally.usage.total_tokens"]
    assert telemetry.metric_sum("completion.tokens.cached") == usage["gen_ai.usage.cache_read.input_tokens"]
    assert telemetry.metric_sum("completion.tokens.cache_write") == usage["gen_ai.usage.cache_creation.input_tokens"]
    assert telemetry.metric_sum("completion.tokens.reasoning") == usage["gen_ai.usage.reasoning.output_tokens"]
    points = {
        dict(p.attributes)["gen_ai.token.type"]: p
        for p in telemetry.metrics()["gen_ai.client.token.usage"].data.data_points
    }
    assert set(points) == {"input", "output"}
    assert (points["input"].count, points["input"].sum) == (1, usage["gen_ai.usage.input_tokens"])
    assert (points["output"].count, points["output"].sum) == (1, usage["gen_ai.usage.output_tokens"])
    for p in points.values():
        attrs = dict(p.attributes)
        assert attrs["gen_ai.provider.name"] == "openai"
        assert attrs["server.address"] == "127.0.0.1"
    assert_counted_once(telemetry)


def test_metric_series_name_provider_operation_and_models(telemetry, provider):
    with client(provider) as c:
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert telemetry.record()["gen_ai.response.model"] == RESPONSE_MODELS[CHAT_MODEL]
    [attrs] = telemetry.series("completion.requests.total")
    assert attrs == {
        "gen_ai.provider.name": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": CHAT_MODEL,
        "gen_ai.response.model": RESPONSE_MODELS[CHAT_MODEL],
    }


def test_several_calls_add_up(telemetry, provider):
    with client(provider) as c:
        for _ in range(3):
            c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
        list(c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True))
    assert len(telemetry.records()) == 4
    assert len(telemetry.spans(scope=None)) == 4
    assert telemetry.metric_sum("completion.requests.total") == 4
    assert telemetry.metric_sum("completion.tokens.prompt") == 4 * CHAT_USAGE["prompt_tokens"]
    assert telemetry.metric_sum("completion.time_to_first_token") == 1


def test_nothing_is_recorded_after_uninstrument(telemetry, provider):
    llmtally.uninstrument()
    with client(provider) as c:
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
        list(c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True))
    assert telemetry.records() == []
    assert telemetry.spans(scope=None) == []
    assert "stream_options" not in provider.requests[-1].json


def test_non_llm_sdk_calls_are_not_recorded(telemetry, provider):
    with client(provider, max_retries=0) as c, pytest.raises(openai.NotFoundError):
        c.models.list()
    assert telemetry.records() == []
    assert telemetry.spans(scope=None) == []


# --- async client ----------------------------------------------------------------------------------------------


def test_async_chat_create_and_stream(telemetry, provider):
    async def main():
        async with async_client(provider) as c:
            completion = await c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
            stream = await c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True)
            chunks = [chunk async for chunk in stream]
            return completion, chunks

    completion, chunks = asyncio.run(main())
    assert completion.usage.prompt_tokens == CHAT_USAGE["prompt_tokens"]
    assert chunks and all(chunk.choices for chunk in chunks)
    records = telemetry.records()
    spans = telemetry.spans(scope=None)
    assert len(records) == 2 and len(spans) == 2
    assert {s.instrumentation_scope.name for s in spans} == {"llmtally"}
    assert [r["gen_ai.request.stream"] for r in records] == [False, True]
    for record in records:
        assert record["gen_ai.provider.name"] == "openai"
        assert record["gen_ai.operation.name"] == "chat"
        assert record["gen_ai.response.model"] == RESPONSE_MODELS[CHAT_MODEL]
        assert tuple(record["gen_ai.response.finish_reasons"]) == ("stop",)
        assert_tokens(record, CHAT_TOKENS)
    assert records[1]["llmtally.stream.outcome"] == "completed"
    assert records[1]["gen_ai.response.time_to_first_chunk"] > 0
    assert telemetry.metric_sum("completion.time_to_first_token") == 1
    assert telemetry.metric_sum("completion.requests.success") == 2


def test_async_chat_stream_with_the_apps_own_include_usage(telemetry, provider):
    async def main():
        async with async_client(provider) as c:
            stream = await c.chat.completions.create(
                model=CHAT_MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(main())
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == CHAT_USAGE["total_tokens"]
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=CHAT_MODEL, stream=True, finish=("stop",))
    assert_tokens(record, CHAT_TOKENS)


def test_async_chat_parse_and_stream_helper(telemetry, provider):
    async def main():
        async with async_client(provider) as c:
            parsed = await c.chat.completions.parse(model=CHAT_MODEL, messages=MESSAGES, response_format=Answer)
            async with c.chat.completions.stream(model=CHAT_MODEL, messages=MESSAGES, response_format=Answer) as stream:
                final = await stream.get_final_completion()
            return parsed, final

    parsed, final = asyncio.run(main())
    assert parsed.choices[0].message.parsed == Answer(answer="42")
    assert final.choices[0].message.parsed == Answer(answer="42")
    records = telemetry.records()
    assert len(records) == 2 and len(telemetry.spans(scope=None)) == 2
    assert [r["gen_ai.request.stream"] for r in records] == [False, True]
    for record in records:
        assert_tokens(record, CHAT_TOKENS)
    assert records[1]["llmtally.stream.outcome"] == "completed"


def test_async_chat_function_calling_stream(telemetry, provider):
    async def main():
        async with async_client(provider) as c:
            stream = await c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, tools=TOOLS, stream=True)
            return [chunk async for chunk in stream]

    chunks = asyncio.run(main())
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    record, span = only_record(telemetry)
    assert_call(record, span, operation="chat", model=CHAT_MODEL, stream=True, finish=("tool_calls",))
    assert_tokens(record, CHAT_TOKENS)


def test_async_responses_create_stream_helper_and_parse(telemetry, provider):
    async def main():
        async with async_client(provider) as c:
            plain = await c.responses.create(model=RESPONSES_MODEL, input="hi")
            stream = await c.responses.create(model=RESPONSES_MODEL, input="hi", stream=True)
            events = [event async for event in stream]
            async with c.responses.stream(model=RESPONSES_MODEL, input="hi") as helper:
                final = await helper.get_final_response()
            parsed = await c.responses.parse(model=RESPONSES_MODEL, input="hi", text_format=Answer)
            return plain, events, final, parsed

    plain, events, final, parsed = asyncio.run(main())
    assert plain.usage.input_tokens == RESPONSES_USAGE["input_tokens"]
    assert events[-1].type == "response.completed"
    assert final.output_text == reply_text()
    assert parsed.output_parsed == Answer(answer="42")
    records = telemetry.records()
    assert len(records) == 4 and len(telemetry.spans(scope=None)) == 4
    assert [r["gen_ai.request.stream"] for r in records] == [False, True, True, False]
    for record in records:
        assert record["gen_ai.operation.name"] == "chat"
        assert record["gen_ai.response.model"] == RESPONSE_MODELS[RESPONSES_MODEL]
        assert tuple(record["gen_ai.response.finish_reasons"]) == ("completed",)
        assert_tokens(record, RESPONSES_TOKENS)
    assert [r.get("llmtally.stream.outcome") for r in records] == [None, "completed", "completed", None]
    assert telemetry.metric_sum("completion.tokens.prompt") == 4 * RESPONSES_USAGE["input_tokens"]


def test_async_embeddings_and_legacy_completions(telemetry, provider):
    async def main():
        async with async_client(provider) as c:
            await c.embeddings.create(model=EMBEDDINGS_MODEL, input="a")
            await c.completions.create(model=COMPLETIONS_MODEL, prompt="hi")
            stream = await c.completions.create(model=COMPLETIONS_MODEL, prompt="hi", stream=True)
            return [chunk async for chunk in stream]

    chunks = asyncio.run(main())
    assert chunks and all(chunk.choices for chunk in chunks)
    records = telemetry.records()
    assert len(records) == 3 and len(telemetry.spans(scope=None)) == 3
    assert [r["gen_ai.operation.name"] for r in records] == ["embeddings", "text_completion", "text_completion"]
    assert_tokens(records[0], EMBEDDINGS_TOKENS)
    assert_tokens(records[1], COMPLETIONS_TOKENS)
    assert_tokens(records[2], COMPLETIONS_TOKENS)
    assert records[2]["llmtally.stream.outcome"] == "completed"
    assert [s.name for s in telemetry.spans()] == [
        f"embeddings {EMBEDDINGS_MODEL}",
        f"text_completion {COMPLETIONS_MODEL}",
        f"text_completion {COMPLETIONS_MODEL}",
    ]


def test_async_with_raw_and_streaming_response(telemetry, provider):
    async def main():
        async with async_client(provider) as c:
            raw = await c.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=MESSAGES)
            completion = raw.parse()
            async with c.chat.completions.with_streaming_response.create(
                model=CHAT_MODEL, messages=MESSAGES, stream=True
            ) as response:
                lines = [line async for line in response.iter_lines()]
            async with c.responses.with_streaming_response.create(model=RESPONSES_MODEL, input="hi") as response:
                parsed = await response.parse()
            return completion, lines, parsed

    completion, lines, parsed = asyncio.run(main())
    assert completion.usage.prompt_tokens == CHAT_USAGE["prompt_tokens"]
    assert all(chunk["choices"] for chunk in chunk_lines(lines))
    assert parsed.usage.input_tokens == RESPONSES_USAGE["input_tokens"]
    records = telemetry.records()
    assert len(records) == 3 and len(telemetry.spans(scope=None)) == 3
    assert_tokens(records[0], CHAT_TOKENS)
    assert_tokens(records[1], CHAT_TOKENS)
    assert_tokens(records[2], RESPONSES_TOKENS)
    assert records[1]["llmtally.stream.outcome"] == "completed"


def test_async_stream_closed_early(telemetry, provider):
    async def main():
        async with async_client(provider) as c:
            stream = await c.chat.completions.create(
                model=CHAT_MODEL, messages=MESSAGES, stream=True, extra_headers={"x-fake-chunks": "30"}
            )
            seen = 0
            async for _ in stream:
                seen += 1
                if seen == 2:
                    break
            await stream.close()

    asyncio.run(main())
    record, _ = only_record(telemetry)
    assert record["llmtally.stream.outcome"] == "closed_early"
    assert record["llmtally.usage.source"] == "none"
    assert_no_tokens(record)
    assert "error.type" not in record


def test_async_errors_and_retries(telemetry, provider):
    async def main():
        async with async_client(provider, max_retries=0) as c:
            provider.fail_next(500)
            with pytest.raises(openai.InternalServerError):
                await c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
            provider.hang_next(2)
            with pytest.raises(openai.APITimeoutError):
                await c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, timeout=0.3)
            provider.fail_next(429, retry_after="0")
            await c.with_options(max_retries=2).chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
            provider.drop_next()
            await c.with_options(max_retries=1).chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)

    asyncio.run(main())
    records = telemetry.records()
    assert len(records) == 4 and len(telemetry.spans(scope=None)) == 4
    assert [r.get("error.type") for r in records] == ["server_error", "timeout", None, None]
    assert [r.get("http.request.resend_count") for r in records] == [None, None, 1, 1]
    assert json.loads(records[2]["llmtally.events"])[0]["http.response.status_code"] == 429
    assert_tokens(records[2], CHAT_TOKENS)
    assert_tokens(records[3], CHAT_TOKENS)
    assert telemetry.metric_sum("completion.requests.error") == 2
    assert telemetry.metric_sum("completion.requests.success") == 2


def test_async_connection_dropped(telemetry, provider):
    async def main():
        async with async_client(provider, max_retries=0) as c:
            provider.drop_next()
            with pytest.raises(openai.APIConnectionError):
                await c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)

    asyncio.run(main())
    record, _ = only_record(telemetry)
    assert record["error.type"] == "connection_error"
    assert telemetry.metric_sum("completion.requests.error", {"error.type": "connection_error"}) == 1


def test_async_attribution(telemetry, provider):
    async def main():
        async with async_client(provider) as c:
            with llmtally.attributes(user="u2", feature="f2", api_key="team-b"):
                await c.embeddings.create(model=EMBEDDINGS_MODEL, input="a")

    asyncio.run(main())
    record = telemetry.record()
    assert (record["user.id"], record["llmtally.feature"], record["llmtally.api_key"]) == ("u2", "f2", "team-b")
    [attrs] = telemetry.series("completion.requests.total")
    assert attrs["llmtally.feature"] == "f2"
    assert "user.id" not in attrs and "llmtally.api_key" not in attrs


# --- more stream outcomes and context ------------------------------------------------------------------------


def test_stream_retried_after_429_is_one_completed_record(telemetry, provider):
    provider.fail_next(429, retry_after="0")
    with client(provider, max_retries=1) as c:
        chunks = list(c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True))
    assert chunks and all(chunk.choices for chunk in chunks)
    assert len(provider.requests) == 2
    assert all(r.json["stream_options"] == {"include_usage": True} for r in provider.requests)
    record, span = only_record(telemetry)
    assert record["http.request.resend_count"] == 1
    assert record["llmtally.stream.outcome"] == "completed"
    assert "error.type" not in record
    assert_tokens(record, CHAT_TOKENS)
    assert [e.attributes["http.response.status_code"] for e in span.events] == [429]


def test_streamed_request_answered_with_an_error(telemetry, provider):
    provider.fail_next(503)
    with client(provider, max_retries=0) as c, pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True)
    record, _ = only_record(telemetry)
    assert record["error.type"] == "server_error"
    assert record["http.response.status_code"] == 503
    assert record["llmtally.error.message"] == "The engine is currently overloaded, please try again later."
    assert record["llmtally.usage.source"] == "none"
    # The stream never started: it did not complete.
    assert record.get("llmtally.stream.outcome") in (None, "failed")
    assert_counted_once(telemetry, success=False)


def test_stream_timing_out_midway_is_a_failed_stream(telemetry, provider):
    with client(provider, max_retries=0, timeout=0.3) as c:
        stream = c.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, stream=True, extra_headers={"x-fake-chunk-delay": "1"}
        )
        with pytest.raises(openai.APITimeoutError):
            list(stream)
    record, span = only_record(telemetry)
    assert record["llmtally.stream.outcome"] == "failed"
    assert record["error.type"] == "timeout"
    assert record["llmtally.usage.source"] == "none"
    assert not span.status.is_ok
    assert_counted_once(telemetry, success=False)


def test_stream_dropped_without_close_is_abandoned(telemetry, provider):
    import gc

    with client(provider) as c:
        stream = c.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, stream=True, extra_headers={"x-fake-chunks": "30"}
        )
        next(iter(stream))
        del stream
        gc.collect()
        record, _ = only_record(telemetry)
    assert record["llmtally.stream.outcome"] == "abandoned"
    assert "error.type" not in record


def test_span_is_a_child_of_the_apps_span_and_the_record_is_in_its_context(telemetry, provider):
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as parent, client(provider) as c:
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    spans = telemetry.spans()
    assert len(spans) == 1
    span = spans[0]
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    [event] = telemetry.events()
    assert event.log_record.trace_id == span.context.trace_id
    assert event.log_record.span_id == span.context.span_id


def test_concurrent_async_calls_are_recorded_separately(telemetry, provider):
    async def one(c, i):
        with llmtally.attributes(feature=f"f{i}"):
            if i % 2:
                stream = await c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True)
                return [chunk async for chunk in stream]
            return await c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)

    async def main():
        async with async_client(provider) as c:
            await asyncio.gather(*(one(c, i) for i in range(6)))

    asyncio.run(main())
    records = telemetry.records()
    assert len(records) == 6 and len(telemetry.spans(scope=None)) == 6
    assert sorted(r["llmtally.feature"] for r in records) == [f"f{i}" for i in range(6)]
    for record in records:
        assert_tokens(record, CHAT_TOKENS)
        assert record["gen_ai.request.stream"] is (int(record["llmtally.feature"][1:]) % 2 == 1)
    assert len({s.context.trace_id for s in telemetry.spans()}) == 6
    assert telemetry.metric_sum("completion.tokens.prompt") == 6 * CHAT_USAGE["prompt_tokens"]


def test_concurrent_threads_share_one_sync_client(telemetry, provider):
    from concurrent.futures import ThreadPoolExecutor

    with client(provider) as c, ThreadPoolExecutor(4) as pool:

        def call(_):
            return list(c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True))

        results = list(pool.map(call, range(8)))
    assert all(chunks and all(chunk.choices for chunk in chunks) for chunks in results)
    records = telemetry.records()
    assert len(records) == 8 and len(telemetry.spans(scope=None)) == 8
    for record in records:
        assert_tokens(record, CHAT_TOKENS)
        assert record["llmtally.stream.outcome"] == "completed"


def test_azure_client_names_the_azure_provider(telemetry, provider):
    with openai.AzureOpenAI(
        azure_endpoint=provider.base_url, api_key=API_KEY, api_version="2024-10-21", azure_deployment="prod-gpt4o"
    ) as c:
        c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert "/openai/deployments/prod-gpt4o/chat/completions" in provider.requests[-1].path
    record, _ = only_record(telemetry)
    assert record["gen_ai.provider.name"] == "azure.ai.openai"
    assert_tokens(record, CHAT_TOKENS)
