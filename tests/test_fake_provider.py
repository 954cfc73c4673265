"""The fake provider answers the real openai / anthropic SDKs (and raw httpx) over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import httpx2
import openai
import pytest
from anthropic.types import MessageParam, ToolParam
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import FunctionToolParam
from pydantic import BaseModel

from llmtally.demo.fake_provider import (
    ANTHROPIC_RATELIMIT_HEADERS,
    ANTHROPIC_USAGE,
    CHAT_USAGE,
    COMPLETIONS_USAGE,
    EMBEDDINGS_USAGE,
    OLLAMA_USAGE,
    OPENAI_RATELIMIT_HEADERS,
    REPLY_TEXT,
    RESPONSES_USAGE,
    FakeProvider,
    fake_embedding,
    reply_text,
)

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]
CLAUDE_MSGS: list[MessageParam] = [{"role": "user", "content": "Say hello"}]
CLAUDE = "claude-haiku-4-5"  # not deprecated in this SDK, so no DeprecationWarning
CLAUDE_SNAPSHOT = "claude-haiku-4-5-20251001"


class Answer(BaseModel):
    answer: str


class Weather(BaseModel):
    city: str
    days: int


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProvider) -> Iterator[FakeProvider]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def oai(fake: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(fake: FakeProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


# --- OpenAI chat.completions -----------------------------------------------------------------------------


def test_chat_completion(fake: FakeProvider, oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS)
    resp = raw.parse()
    assert resp.id.startswith("chatcmpl-")
    assert resp.object == "chat.completion"
    assert resp.model == "gpt-4o-mini-2024-07-18"
    assert resp.system_fingerprint
    assert resp.choices[0].message.content == REPLY_TEXT
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == CHAT_USAGE["prompt_tokens"]
    assert resp.usage.completion_tokens == CHAT_USAGE["completion_tokens"]
    assert resp.usage.total_tokens == CHAT_USAGE["total_tokens"]
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == CHAT_USAGE["prompt_tokens_details"]["cached_tokens"]
    assert resp.usage.completion_tokens_details is not None
    reasoning = CHAT_USAGE["completion_tokens_details"]["reasoning_tokens"]
    assert resp.usage.completion_tokens_details.reasoning_tokens == reasoning > 0
    assert raw.headers["x-request-id"].startswith("req_")
    for name, value in OPENAI_RATELIMIT_HEADERS.items():
        assert raw.headers[name] == value
    assert int(raw.headers["content-length"]) == len(raw.content)

    (req,) = fake.requests
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.json["model"] == "gpt-4o-mini"
    assert json.loads(req.body) == req.json


def test_chat_stream_include_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True})
    )
    # role chunk + 5 content deltas + finish chunk + usage-only chunk
    assert len(chunks) == 8
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY_TEXT
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.model_dump(exclude_none=True) == CHAT_USAGE
    assert {c.model for c in chunks} == {"gpt-4o-2024-08-06"}
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_without_usage_and_chunk_override(fake: FakeProvider) -> None:
    body = {"model": "gpt-4o-mini", "messages": MSGS, "stream": True}
    with httpx2.Client(base_url=fake.openai_base_url) as http:
        resp = http.post("/chat/completions", json=body, headers={"x-fake-chunks": "3"})
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["transfer-encoding"] == "chunked"
    lines = [line for line in resp.text.split("\n") if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all("usage" not in c for c in chunks)
    assert len(chunks) == 1 + 3 + 1
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == reply_text(3)


def test_chat_parse_structured_output(fake: FakeProvider, oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.parse(model="gpt-4o", messages=MSGS, response_format=Answer)
    assert resp.choices[0].message.parsed == Answer(answer="42")
    assert resp.choices[0].message.content == '{"answer": "42"}'
    fmt = fake.requests[-1].json["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Answer"
    assert fmt["json_schema"]["strict"] is True


def test_chat_stream_helper_parses(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(
        model="gpt-4o-mini", messages=MSGS, response_format=Answer, stream_options={"include_usage": True}
    ) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_completion()
    assert {"chunk", "content.delta", "content.done"} <= kinds
    assert final.choices[0].message.parsed == Answer(answer="42")
    assert final.usage is not None
    assert final.usage.total_tokens == CHAT_USAGE["total_tokens"]


def test_chat_tool_call(oai: openai.OpenAI) -> None:
    tool = openai.pydantic_function_tool(Weather, name="get_weather")
    resp = oai.chat.completions.parse(model="gpt-4o-mini", messages=MSGS, tools=[tool])
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert call.function.parsed_arguments == Weather(city="42", days=42)

    with oai.chat.completions.stream(model="gpt-4o-mini", messages=MSGS, tools=[tool]) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls
    assert streamed is not None
    assert streamed[0].function.parsed_arguments == Weather(city="42", days=42)
    assert final.choices[0].finish_reason == "tool_calls"


def test_azure_deployment_path(fake: FakeProvider) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=fake.base_url, azure_deployment="my-gpt4o", api_version="2024-10-21", api_key="k"
    )
    resp = client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert resp.choices[0].message.content == REPLY_TEXT
    assert fake.requests[-1].path == "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"


# --- OpenAI legacy completions, responses, embeddings ----------------------------------------------------


def test_legacy_completions(oai: openai.OpenAI) -> None:
    resp = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
    assert resp.object == "text_completion"
    assert resp.choices[0].text == REPLY_TEXT
    assert resp.usage is not None
    assert resp.usage.model_dump(exclude_none=True) == COMPLETIONS_USAGE

    chunks = list(
        oai.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="x", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == REPLY_TEXT
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == COMPLETIONS_USAGE["prompt_tokens"]
    assert all(c.usage is None for c in chunks[:-1])

    plain = list(oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", stream=True))
    assert all(c.usage is None for c in plain)
    assert plain[-1].choices[0].finish_reason == "stop"


def test_responses_create(oai: openai.OpenAI) -> None:
    resp = oai.responses.create(model="gpt-4.1", input="Say hello")
    assert resp.id.startswith("resp_")
    assert resp.object == "response"
    assert resp.status == "completed"
    assert resp.model == "gpt-4.1-2025-04-14"
    assert resp.output_text == REPLY_TEXT
    assert resp.usage is not None
    assert resp.usage.input_tokens == RESPONSES_USAGE["input_tokens"]
    assert resp.usage.input_tokens_details.cached_tokens == RESPONSES_USAGE["input_tokens_details"]["cached_tokens"]
    assert resp.usage.output_tokens == RESPONSES_USAGE["output_tokens"]
    reasoning = RESPONSES_USAGE["output_tokens_details"]["reasoning_tokens"]
    assert resp.usage.output_tokens_details.reasoning_tokens == reasoning > 0
    assert resp.usage.total_tokens == RESPONSES_USAGE["total_tokens"]


def test_responses_stream_events(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4.1-mini", input="hi", stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.usage is not None
    assert done.response.usage.model_dump(exclude_none=True) == RESPONSES_USAGE
    assert done.response.output_text == REPLY_TEXT


def test_responses_stream_helper_and_parse(fake: FakeProvider, oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-4.1", input="hi", extra_headers={"x-fake-chunks": "7"}) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) == 7
    assert final.output_text == reply_text(7)
    assert final.usage is not None
    assert final.usage.output_tokens == RESPONSES_USAGE["output_tokens"]

    parsed = oai.responses.parse(model="gpt-4.1", input="hi", text_format=Answer)
    assert parsed.output_parsed == Answer(answer="42")
    fmt = fake.requests[-1].json["text"]["format"]
    assert (fmt["type"], fmt["name"], fmt["strict"]) == ("json_schema", "Answer", True)

    with oai.responses.stream(model="gpt-4.1", input="hi", text_format=Answer) as stream:
        assert stream.get_final_response().output_parsed == Answer(answer="42")


def test_responses_function_call(oai: openai.OpenAI) -> None:
    tool: FunctionToolParam = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    }
    resp = oai.responses.create(model="gpt-4.1", input="weather?", tools=[tool])
    item = resp.output[0]
    assert item.type == "function_call"
    assert (item.name, json.loads(item.arguments)) == ("get_weather", {"city": "42"})
    with oai.responses.stream(model="gpt-4.1", input="weather?", tools=[tool]) as stream:
        final = stream.get_final_response()
    assert final.output[0].type == "function_call"
    assert json.loads(final.output[0].arguments) == {"city": "42"}


def test_embeddings(fake: FakeProvider, oai: openai.OpenAI) -> None:
    resp = oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta", "gamma"])
    assert fake.requests[-1].json["encoding_format"] == "base64"  # the SDK's default, decoded client-side
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert [d.embedding for d in resp.data] == [fake_embedding(i) for i in range(3)]
    assert resp.model == "text-embedding-3-small"
    assert resp.usage.model_dump() == EMBEDDINGS_USAGE

    floats = oai.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float")
    assert len(floats.data) == 1
    assert floats.data[0].embedding == fake_embedding(0)


def test_unknown_route_is_openai_404(fake: FakeProvider, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        oai.post("/nope", body={}, cast_to=object)
    assert err.value.body == {
        "message": "Invalid URL (POST /v1/nope)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


# --- Anthropic -------------------------------------------------------------------------------------------


def test_anthropic_message(fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(model=CLAUDE, max_tokens=64, messages=CLAUDE_MSGS)
    msg = raw.parse()
    assert msg.id.startswith("msg_")
    assert (msg.type, msg.role, msg.model) == ("message", "assistant", CLAUDE_SNAPSHOT)
    assert msg.content[0].type == "text"
    assert msg.content[0].text == REPLY_TEXT
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == ANTHROPIC_USAGE["input_tokens"]
    assert msg.usage.cache_read_input_tokens == ANTHROPIC_USAGE["cache_read_input_tokens"] > 0
    assert msg.usage.cache_creation_input_tokens == ANTHROPIC_USAGE["cache_creation_input_tokens"] > 0
    assert msg.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]
    assert raw.headers["request-id"].startswith("req_")
    for name, value in ANTHROPIC_RATELIMIT_HEADERS.items():
        assert raw.headers[name] == value
    req = fake.requests[-1]
    assert req.path == "/v1/messages"
    # anthropic 2.x authenticates with `authorization: Bearer`, older SDKs with `x-api-key`
    assert "sk-ant-test" in (req.headers.get("x-api-key") or req.headers["authorization"])
    assert "anthropic-version" in req.headers


def test_anthropic_stream_events(claude: anthropic.Anthropic) -> None:
    events = list(claude.messages.create(model=CLAUDE, max_tokens=64, messages=CLAUDE_MSGS, stream=True))
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the `ping` event is swallowed by the SDK
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == ANTHROPIC_USAGE["input_tokens"]
    assert start.message.usage.cache_read_input_tokens == ANTHROPIC_USAGE["cache_read_input_tokens"]
    assert start.message.usage.output_tokens == 1
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]


def test_anthropic_stream_helper(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=CLAUDE,
        max_tokens=64,
        messages=CLAUDE_MSGS,
        extra_headers={"x-fake-chunks": "2"},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == reply_text(2)
    assert final.content[0].type == "text"
    assert final.content[0].text == reply_text(2)
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == ANTHROPIC_USAGE["input_tokens"]
    assert final.usage.cache_creation_input_tokens == ANTHROPIC_USAGE["cache_creation_input_tokens"]
    assert final.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]


def test_anthropic_parse_and_beta(fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    parsed = claude.messages.parse(model=CLAUDE, max_tokens=64, messages=CLAUDE_MSGS, output_format=Answer)
    assert parsed.parsed_output == Answer(answer="42")
    fmt = fake.requests[-1].json["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"]["required"] == ["answer"]

    beta = claude.beta.messages.create(
        model=CLAUDE,
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        betas=["some-beta-2025-01-01"],
    )
    assert beta.content[0].type == "text"
    assert beta.content[0].text == REPLY_TEXT
    assert beta.usage.cache_read_input_tokens == ANTHROPIC_USAGE["cache_read_input_tokens"]
    assert fake.requests[-1].headers["anthropic-beta"] == "some-beta-2025-01-01"


def test_anthropic_tool_use(claude: anthropic.Anthropic) -> None:
    tools: list[ToolParam] = [{"name": "get_weather", "input_schema": Weather.model_json_schema()}]
    msg = claude.messages.create(model=CLAUDE, max_tokens=64, messages=CLAUDE_MSGS, tools=tools)
    assert msg.stop_reason == "tool_use"
    block = msg.content[0]
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", {"city": "42", "days": 42})
    with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=CLAUDE_MSGS, tools=tools) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use"
    assert final.content[0].input == {"city": "42", "days": 42}
    assert final.stop_reason == "tool_use"


# --- Ollama ----------------------------------------------------------------------------------------------


def test_ollama_chat_ndjson_with_httpx2(fake: FakeProvider) -> None:
    body = {"model": "llama3.2", "messages": MSGS}  # no "stream": Ollama streams by default
    with httpx2.Client(base_url=fake.base_url) as http, http.stream("POST", "/api/chat", json=body) as resp:
        assert resp.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert len(lines) == 6
    assert all(not obj["done"] for obj in lines[:-1])
    assert "".join(obj["message"]["content"] for obj in lines) == REPLY_TEXT
    final = lines[-1]
    assert final["done"] is True
    assert final["done_reason"] == "stop"
    assert final["model"] == "llama3.2"
    assert (final["prompt_eval_count"], final["eval_count"]) == (
        OLLAMA_USAGE["prompt_eval_count"],
        OLLAMA_USAGE["eval_count"],
    )


def test_ollama_non_streaming_with_httpx(fake: FakeProvider) -> None:
    with httpx.Client(base_url=fake.base_url) as http:
        chat = http.post("/api/chat", json={"model": "llama3.2", "messages": MSGS, "stream": False}).json()
        gen = http.post("/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False}).json()
    assert chat["message"] == {"role": "assistant", "content": REPLY_TEXT}
    assert gen["response"] == REPLY_TEXT
    for obj in (chat, gen):
        assert obj["done"] is True
        assert obj["eval_count"] == OLLAMA_USAGE["eval_count"]
        assert obj["prompt_eval_count"] == OLLAMA_USAGE["prompt_eval_count"]


# --- scripted failures -----------------------------------------------------------------------------------


def test_429_is_retried_by_the_sdk(fake: FakeProvider) -> None:
    fake.fail_next(429, retry_after="0")
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-test", max_retries=2)
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert resp.choices[0].message.content == REPLY_TEXT
    assert len(fake.requests) == 2
    assert fake.requests[1].headers["x-stainless-retry-count"] == "1"


def test_openai_error_body_and_headers(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.fail_next(429, retry_after="7")
    with pytest.raises(openai.RateLimitError) as err:
        oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert err.value.type == "rate_limit_exceeded"
    assert err.value.code == "rate_limit_exceeded"
    assert err.value.response.headers["retry-after"] == "7"
    assert err.value.request_id is not None
    assert err.value.request_id.startswith("req_")

    fake.fail_next(500, times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as server_err:
            oai.responses.create(model="gpt-4.1", input="hi")
        assert server_err.value.type == "server_error"
    assert oai.responses.create(model="gpt-4.1", input="hi").status == "completed"

    fake.fail_next(400, body={"error": {"message": "custom", "type": "x", "param": "p", "code": None}})
    with pytest.raises(openai.BadRequestError) as bad:
        oai.embeddings.create(model="text-embedding-3-small", input="a")
    assert bad.value.message.endswith("custom")
    assert bad.value.param == "p"


def test_anthropic_error_bodies(fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    fake.fail_next(529)
    with pytest.raises(anthropic.APIStatusError) as err:
        claude.messages.create(model=CLAUDE, max_tokens=8, messages=CLAUDE_MSGS)
    assert err.value.status_code == 529
    body = err.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"

    fake.fail_next(429, retry_after="0")
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model=CLAUDE, max_tokens=8, messages=CLAUDE_MSGS)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert limited.value.response.headers["retry-after"] == "0"


def test_ollama_error_body(fake: FakeProvider) -> None:
    fake.fail_next(500)
    with httpx2.Client(base_url=fake.base_url) as http:
        resp = http.post("/api/chat", json={"model": "llama3.2", "messages": MSGS})
    assert resp.status_code == 500
    assert set(resp.json()) == {"error"}


def test_drop_gives_connection_error(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.drop_next()
    with pytest.raises(openai.APIConnectionError) as err:
        oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert not isinstance(err.value, openai.APITimeoutError)
    assert len(fake.requests) == 1
    assert oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS).choices  # next one is fine


def test_hang_gives_timeout(fake: FakeProvider) -> None:
    fake.hang_next(5)
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MSGS).choices


def test_scripts_apply_in_order_and_reset(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.fail_next(503)
    fake.fail_next(500)
    with pytest.raises(openai.InternalServerError) as first:
        oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert first.value.status_code == 503
    fake.reset()
    assert fake.requests == []
    assert oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS).choices


def test_malformed_request_and_chunk_delay(fake: FakeProvider) -> None:
    with httpx2.Client(base_url=fake.base_url) as http:
        bad = http.post("/v1/chat/completions", json={"model": "m", "stream": True, "stream_options": "x"})
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"
        slow = http.post(
            "/v1/chat/completions",
            json={"model": "m", "stream": True},
            headers={"x-fake-chunk-delay": "0.01", "x-fake-chunks": "2"},
        )
        assert slow.elapsed.total_seconds() >= 0.03  # 4 events after the first, 10 ms apart
        assert slow.text.count("data: ") == 5


# --- async -----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_openai_stream(fake: FakeProvider) -> None:
    async with openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk", max_retries=0) as client:
        resp = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        assert resp.usage is not None
        assert resp.usage.prompt_tokens == CHAT_USAGE["prompt_tokens"]
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        async with client.responses.stream(model="gpt-4.1", input="hi") as rstream:
            final = await rstream.get_final_response()
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == CHAT_USAGE["completion_tokens"]
    assert final.usage is not None
    assert final.usage.total_tokens == RESPONSES_USAGE["total_tokens"]


@pytest.mark.asyncio
async def test_async_anthropic_stream(fake: FakeProvider) -> None:
    async with anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="k", max_retries=0) as client:
        msg = await client.messages.create(model=CLAUDE, max_tokens=8, messages=CLAUDE_MSGS)
        async with client.messages.stream(model=CLAUDE, max_tokens=8, messages=CLAUDE_MSGS) as stream:
            final = await stream.get_final_message()
    assert msg.usage.output_tokens == final.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]
    assert final.usage.cache_read_input_tokens == ANTHROPIC_USAGE["cache_read_input_tokens"]


# --- lifecycle -------------------------------------------------------------------------------------------


def test_stop_cuts_keepalive_connections() -> None:
    fake = FakeProvider(stream_chunks=2).start()
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk", max_retries=0)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MSGS).choices
    fake.stop()
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    with pytest.raises(RuntimeError):
        _ = fake.base_url


def test_main_prints_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmtally.demo.fake_provider", "--chunks", "2"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with httpx2.Client(base_url=url) as http:
            lines = http.post("/api/generate", json={"model": "llama3.2", "prompt": "hi"}).text.splitlines()
        assert len(lines) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
