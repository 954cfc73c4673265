"""Recorded-style provider answers replayed through the real SDKs: service tiers, Azure behind a gateway, and usage
wherever each provider puts it.

A replay server on 127.0.0.1 answers every request with the payload the test gives it (shaped as the providers
answer, field for field). Each call's span goes through the receiver's conversion and pricing, and its cost is
checked against genai-prices given the same tier as price context.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from llmtally.exporter.normalise.record import Record
from llmtally.exporter.price import Pricer
from pricing_helpers import answer_cost, record_cost

MESSAGES = [{"role": "user", "content": "Say hello"}]


class Replay:
    """An HTTP server that answers every request with one scripted answer and keeps what it was sent."""

    def __init__(self) -> None:
        self.status = 200
        self.content_type = "application/json"
        self.body = b"{}"
        self.requests: list[tuple[str, Any]] = []  # (path with query, JSON body)
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                replay.requests.append((self.path, json.loads(self.rfile.read(size) or b"null")))
                self.send_response(replay.status)
                self.send_header("content-type", replay.content_type)
                self.send_header("content-length", str(len(replay.body)))
                self.end_headers()
                self.wfile.write(replay.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def answer(self, payload: Mapping[str, Any]) -> None:
        self.content_type, self.body = "application/json", json.dumps(payload).encode()

    def stream(self, events: list[Mapping[str, Any] | str], *, named: bool = False) -> None:
        """An SSE answer: one `data:` line per event (`event:` lines from each event's type when `named`)."""
        out = []
        for event in events:
            data = event if isinstance(event, str) else json.dumps(event)
            name = f"event: {event['type']}\n" if named and not isinstance(event, str) else ""
            out.append(f"{name}data: {data}\n\n")
        self.content_type, self.body = "text/event-stream", "".join(out).encode()


@pytest.fixture(scope="module")
def replay_server() -> Iterator[Replay]:
    server = Replay()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def replay(replay_server: Replay) -> Replay:
    replay_server.requests.clear()
    replay_server.status = 200
    return replay_server


def chat_completion(model: str, usage: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-CZ4mQf8xq1v2W3e4R5t6Y7u8I9o0",
        "object": "chat.completion",
        "created": 1764763200,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "system_fingerprint": None,
        **extra,
    }


OPENAI_USAGE = {
    "prompt_tokens": 1520,
    "completion_tokens": 410,
    "total_tokens": 1930,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 256,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


# --- service tiers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["priority", "flex", "default"])
def test_chat_priced_at_the_tier_the_answer_reports(telemetry, replay, tier):
    replay.answer(chat_completion("gpt-5-mini-2025-08-07", OPENAI_USAGE, service_tier=tier))
    client = openai.OpenAI(api_key="sk-test", base_url=replay.url + "/v1")
    client.chat.completions.create(model="gpt-5-mini", messages=MESSAGES, service_tier="auto")
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.openai.request.service_tier"] == "auto"
    assert attrs["openai.response.service_tier"] == attrs["llmtally.service_tier"] == tier
    assert record.service_tier == tier
    assert record.provider == "openai" and record.usage_source == "provider"
    assert record.provider_cost_nusd == record_cost(record, "openai", "gpt-5-mini", {"service_tier": tier})
    standard = record_cost(record, "openai", "gpt-5-mini")
    assert (record.provider_cost_nusd != standard) is (tier != "default")


def test_streamed_chat_tier_and_the_requested_tier_when_the_answer_has_none(telemetry, replay):
    base = {"id": "chatcmpl-CZ5", "object": "chat.completion.chunk", "created": 1764763200, "model": "gpt-5"}
    replay.stream(
        [
            {**base, "service_tier": "flex", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            {**base, "service_tier": "flex", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
            {**base, "service_tier": "flex", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**base, "service_tier": "flex", "choices": [], "usage": OPENAI_USAGE},
            "[DONE]",
        ]
    )
    client = openai.OpenAI(api_key="sk-test", base_url=replay.url + "/v1")
    chunks = list(client.chat.completions.create(model="gpt-5", messages=MESSAGES, stream=True, service_tier="flex"))
    assert all(c.usage is None for c in chunks)  # the usage chunk llmtally asked for is not the app's
    attrs, record = telemetry.stored()
    assert record.service_tier == attrs["openai.response.service_tier"] == "flex"
    assert record.usage_source == "provider" and record.input_tokens == OPENAI_USAGE["prompt_tokens"]
    assert record.provider_cost_nusd == record_cost(record, "openai", "gpt-5", {"service_tier": "flex"})

    telemetry.clear()
    replay.answer(chat_completion("gpt-5", OPENAI_USAGE))  # an OpenAI-compatible answer without a tier
    client.chat.completions.create(model="gpt-5", messages=MESSAGES, service_tier="priority")
    attrs, record = telemetry.stored()
    assert "openai.response.service_tier" not in attrs
    assert record.service_tier == attrs["llmtally.service_tier"] == "priority"
    assert record.provider_cost_nusd == record_cost(record, "openai", "gpt-5", {"service_tier": "priority"})


def test_auto_without_an_answered_tier_is_standard(telemetry, replay):
    replay.answer(chat_completion("gpt-4o-mini", OPENAI_USAGE))
    openai.OpenAI(api_key="sk-test", base_url=replay.url + "/v1").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, service_tier="auto"
    )
    attrs, record = telemetry.stored()
    assert "llmtally.service_tier" not in attrs and record.service_tier is None
    assert record.provider_cost_nusd == record_cost(record, "openai", "gpt-4o-mini")


AUDIO_USAGE = {
    "prompt_tokens": 1300,
    "completion_tokens": 910,
    "total_tokens": 2210,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 1100, "text_tokens": 200, "image_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 850,
        "text_tokens": 60,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def test_audio_tokens_are_priced_at_the_audio_rates(telemetry, replay):
    body = chat_completion("gpt-audio-2025-08-28", AUDIO_USAGE)
    replay.answer(body)
    client = openai.OpenAI(api_key="sk-test", base_url=replay.url + "/v1")
    client.chat.completions.create(model="gpt-audio", messages=MESSAGES, modalities=["text", "audio"])
    attrs, record = telemetry.stored()
    assert attrs["llmtally.usage.audio.input_tokens"] == 1100 and attrs["llmtally.usage.audio.output_tokens"] == 850
    assert (record.input_tokens, record.input_audio_tokens, record.output_audio_tokens) == (1300, 1100, 850)
    assert record.provider_cost_nusd == answer_cost(body, "gpt-audio", "openai", flavor="chat")
    # At the text rates it would be a fraction of that.
    assert record.provider_cost_nusd > 5 * record_cost(record, "openai", "gpt-audio")


def test_streamed_audio_tokens(telemetry, replay):
    base = {"id": "chatcmpl-CZ6", "object": "chat.completion.chunk", "created": 1764763200, "model": "gpt-audio"}
    replay.stream(
        [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**base, "choices": [], "usage": AUDIO_USAGE},
            "[DONE]",
        ]
    )
    client = openai.OpenAI(api_key="sk-test", base_url=replay.url + "/v1")
    list(client.chat.completions.create(model="gpt-audio", messages=MESSAGES, stream=True))
    record = telemetry.stored()[1]
    assert (record.input_audio_tokens, record.output_audio_tokens, record.usage_source) == (1100, 850, "provider")
    body = chat_completion("gpt-audio", AUDIO_USAGE)
    assert record.provider_cost_nusd == answer_cost(body, "gpt-audio", "openai", flavor="chat")


def test_text_only_answers_carry_no_audio_attributes(telemetry, replay):
    replay.answer(chat_completion("gpt-4o-mini", OPENAI_USAGE))  # audio_tokens: 0 in both details
    openai.OpenAI(api_key="sk-test", base_url=replay.url + "/v1").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    attrs, record = telemetry.stored()
    assert not any("audio" in name for name in attrs)
    assert (record.input_audio_tokens, record.output_audio_tokens) == (0, 0)


def test_responses_api_tier(telemetry, replay):
    usage = {
        "input_tokens": 2048,
        "input_tokens_details": {"cached_tokens": 1536},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 128},
        "total_tokens": 2348,
    }
    response = {
        "id": "resp_68af0c1e",
        "object": "response",
        "created_at": 1764763200,
        "status": "completed",
        "model": "gpt-5-2025-08-07",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "service_tier": "priority",
        "usage": usage,
    }
    replay.stream(
        [
            {"type": "response.created", "sequence_number": 0, "response": {**response, "status": "in_progress"}},
            {"type": "response.completed", "sequence_number": 1, "response": response},
        ],
        named=True,
    )
    client = openai.OpenAI(api_key="sk-test", base_url=replay.url + "/v1")
    list(client.responses.create(model="gpt-5", input="Say hello", stream=True))
    attrs, record = telemetry.stored()
    assert record.service_tier == attrs["openai.response.service_tier"] == "priority"
    assert (record.input_tokens, record.cached_tokens, record.output_tokens) == (2048, 1536, 300)
    assert record.provider_cost_nusd == record_cost(record, "openai", "gpt-5", {"service_tier": "priority"})


def anthropic_message(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


ANTHROPIC_USAGE = {
    "input_tokens": 312,
    "cache_creation_input_tokens": 2048,
    "cache_read_input_tokens": 4096,
    "cache_creation": {"ephemeral_5m_input_tokens": 2048, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 503,
    "service_tier": "priority",
}


def test_anthropic_tier_from_usage(telemetry, replay):
    replay.answer(anthropic_message("claude-sonnet-4-5-20250929", ANTHROPIC_USAGE))
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=replay.url)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=600, messages=MESSAGES, service_tier="auto")
    attrs, record = telemetry.stored()
    assert "openai.response.service_tier" not in attrs
    assert record.service_tier == "priority"
    assert record.input_tokens == 312 + 2048 + 4096 and record.cached_tokens == 4096
    cost = record_cost(record, "anthropic", "claude-sonnet-4-5", {"service_tier": "priority"})
    assert record.provider_cost_nusd == cost


def stream_anthropic(replay: Replay, model: str, usage: Mapping[str, Any]) -> None:
    """Scripts an Anthropic stream: `message_start` with `usage` (one output token so far), a text block, and a
    `message_delta` with the 503 output tokens in all."""
    start = {**anthropic_message(model, {**usage, "output_tokens": 1}), "content": [], "stop_reason": None}
    replay.stream(
        [
            {"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello!"}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 503}},
            {"type": "message_stop"},
        ],
        named=True,
    )


def test_anthropic_streamed_tier(telemetry, replay):
    stream_anthropic(replay, "claude-sonnet-4-5-20250929", {**ANTHROPIC_USAGE, "service_tier": "standard"})
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=replay.url)
    list(client.messages.create(model="claude-sonnet-4-5", max_tokens=600, messages=MESSAGES, stream=True))
    record = telemetry.stored()[1]
    assert record.service_tier == "standard" and record.output_tokens == 503 and record.usage_source == "provider"
    assert record.provider_cost_nusd == record_cost(record, "anthropic", "claude-sonnet-4-5")


CACHE_SPLIT_USAGE = {
    **ANTHROPIC_USAGE,
    "cache_creation_input_tokens": 3072,
    "cache_creation": {"ephemeral_5m_input_tokens": 1024, "ephemeral_1h_input_tokens": 2048},
    "service_tier": "standard",
}


def test_anthropic_1h_cache_writes_are_priced_apart(telemetry, replay):
    body = anthropic_message("claude-sonnet-4-5-20250929", CACHE_SPLIT_USAGE)
    replay.answer(body)
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=replay.url)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=600, messages=MESSAGES)
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 3072
    assert attrs["llmtally.usage.cache_creation.1h.input_tokens"] == 2048
    assert (record.cache_write_tokens, record.cache_write_1h_tokens) == (3072, 2048)
    assert record.provider_cost_nusd == answer_cost(body, "claude-sonnet-4-5", "anthropic")
    # Every write at the 5-minute price would be less: the 1-hour writes cost 2x input, not 1.25x.
    assert record.provider_cost_nusd > record_cost(record, "anthropic", "claude-sonnet-4-5")


def test_anthropic_streamed_1h_cache_writes(telemetry, replay):
    stream_anthropic(replay, "claude-sonnet-4-5-20250929", CACHE_SPLIT_USAGE)
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=replay.url)
    list(client.messages.create(model="claude-sonnet-4-5", max_tokens=600, messages=MESSAGES, stream=True))
    record = telemetry.stored()[1]
    assert (record.cache_write_tokens, record.cache_write_1h_tokens, record.output_tokens) == (3072, 2048, 503)
    body = anthropic_message("claude-sonnet-4-5-20250929", CACHE_SPLIT_USAGE)
    assert record.provider_cost_nusd == answer_cost(body, "claude-sonnet-4-5", "anthropic")


FAST_MODEL = "claude-opus-4-8"  # a model genai-prices prices `speed: fast` for


def test_anthropic_fast_mode_from_usage(telemetry, replay):
    body = anthropic_message(FAST_MODEL, {**CACHE_SPLIT_USAGE, "speed": "fast"})
    replay.answer(body)
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=replay.url)
    client.messages.create(model=FAST_MODEL, max_tokens=600, messages=MESSAGES)
    attrs, record = telemetry.stored()
    assert attrs["llmtally.speed"] == "fast" and "llmtally.request.speed" not in attrs
    assert record.speed == "fast"
    fast = answer_cost(body, FAST_MODEL, "anthropic", context={"speed": "fast"})
    assert record.provider_cost_nusd == fast and fast > answer_cost(body, FAST_MODEL, "anthropic")


def test_anthropic_fast_mode_asked_for_when_the_answer_does_not_say(telemetry, replay):
    body = anthropic_message(FAST_MODEL, ANTHROPIC_USAGE)  # no `speed` in the usage
    replay.answer(body)
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=replay.url)
    client.messages.create(model=FAST_MODEL, max_tokens=600, messages=MESSAGES, extra_body={"speed": "fast"})
    assert replay.requests[-1][1]["speed"] == "fast"
    attrs, record = telemetry.stored()
    assert attrs["llmtally.request.speed"] == "fast" and record.speed == "fast"
    context = {"service_tier": "priority", "speed": "fast"}  # the answer's tier and the asked speed, together
    assert record.provider_cost_nusd == answer_cost(body, FAST_MODEL, "anthropic", context=context)


def test_standard_speed_is_priced_at_standard_rates(telemetry, replay):
    body = anthropic_message(FAST_MODEL, {**CACHE_SPLIT_USAGE, "speed": "standard"})
    replay.answer(body)
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=replay.url)
    client.messages.create(model=FAST_MODEL, max_tokens=600, messages=MESSAGES, extra_body={"speed": "fast"})
    record = telemetry.stored()[1]
    assert record.speed == "standard"  # the answer says how it was served, over what was asked
    assert record.provider_cost_nusd == answer_cost(body, FAST_MODEL, "anthropic")


def test_anthropic_web_searches_are_priced_per_search(telemetry, replay):
    usage = {**ANTHROPIC_USAGE, "service_tier": "standard", "server_tool_use": {"web_search_requests": 3}}
    body = anthropic_message("claude-sonnet-4-5-20250929", usage)
    replay.answer(body)
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=replay.url)
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]
    client.messages.create(model="claude-sonnet-4-5", max_tokens=600, messages=MESSAGES, tools=tools)
    attrs, record = telemetry.stored()
    assert attrs["llmtally.usage.web_searches"] == record.web_searches == 3
    cost = answer_cost(body, "claude-sonnet-4-5", "anthropic")
    assert record.provider_cost_nusd == cost
    assert cost - record_cost(record, "anthropic", "claude-sonnet-4-5") == 30_000_000  # $10 per 1000 searches


def test_batch_tier_is_priced_as_batch_processing():
    """A tier of `batch` (Anthropic's batch results, or another instrumentation's) is genai-prices' batch context."""
    for provider, model, catalog in (
        ("anthropic", "claude-sonnet-4-5", "anthropic"),
        ("openai", "gpt-5-mini", "openai"),
    ):
        start = datetime(2026, 11, 20, tzinfo=UTC).timestamp() * 10**9
        rec = Record(
            "b1",
            int(start),
            int(start) + 1,
            provider=provider,
            request_model=model,
            input_tokens=200_000,
            cached_tokens=50_000,
            output_tokens=40_000,
            usage_source="provider",
            service_tier="batch",
        )
        Pricer().price(rec)
        assert rec.provider_cost_nusd == record_cost(rec, catalog, model, {"processing": "batch"})
        assert rec.provider_cost_nusd < record_cost(rec, catalog, model)


# --- Azure through the SDK's Azure clients -------------------------------------------------------------------------

AZURE_CHAT = chat_completion(
    "gpt-4o-2024-11-20",
    {"prompt_tokens": 25, "completion_tokens": 8, "total_tokens": 33},
    prompt_filter_results=[{"prompt_index": 0, "content_filter_results": {}}],
)


def test_azure_client_behind_a_gateway(telemetry, replay):
    replay.answer(AZURE_CHAT)
    client = openai.AzureOpenAI(api_key="az-key", azure_endpoint=replay.url + "/gw", api_version="2024-10-21")
    client.chat.completions.create(model="prod-gpt4o", messages=MESSAGES)
    assert replay.requests[-1][0] == "/gw/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
    record = telemetry.stored()[1]
    assert record.provider == "azure.ai.openai"
    assert record.request_model == "prod-gpt4o" and record.response_model == "gpt-4o-2024-11-20"
    assert record.priced and record.price_source is not None and "azure/" in record.price_source


def test_async_azure_client_with_a_deployment(telemetry, replay):
    replay.answer(AZURE_CHAT)

    async def call() -> None:
        client = openai.AsyncAzureOpenAI(
            api_key="az-key", azure_endpoint=replay.url, azure_deployment="eu-gpt4o", api_version="2024-10-21"
        )
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    asyncio.run(call())
    assert replay.requests[-1][0].startswith("/openai/deployments/eu-gpt4o/chat/completions?api-version=")
    record = telemetry.stored()[1]
    assert record.provider == "azure.ai.openai" and record.request_model == "gpt-4o"


def test_azure_streamed_first_chunk_without_an_id(telemetry, replay):
    base = {"id": "chatcmpl-AzS1", "object": "chat.completion.chunk", "created": 1764763200, "model": "gpt-4o"}
    replay.stream(
        [
            {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": []},
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**base, "choices": [], "usage": {"prompt_tokens": 25, "completion_tokens": 8, "total_tokens": 33}},
            "[DONE]",
        ]
    )
    client = openai.AzureOpenAI(api_key="az-key", azure_endpoint=replay.url, api_version="2024-10-21")
    list(client.chat.completions.create(model="prod-gpt4o", messages=MESSAGES, stream=True))
    record = telemetry.stored()[1]
    assert record.provider == "azure.ai.openai"
    assert record.response_id == "chatcmpl-AzS1" and record.response_model == "gpt-4o"
    assert (record.input_tokens, record.output_tokens, record.usage_source) == (25, 8, "provider")


def test_api_version_query_names_azure(telemetry, replay):
    """A plain OpenAI client (or plain HTTP) sending Azure's `api-version` query to a custom domain is Azure."""
    replay.answer(AZURE_CHAT)
    client = openai.OpenAI(
        api_key="az-key", base_url=replay.url + "/openai", default_query={"api-version": "2024-10-21"}
    )
    client.chat.completions.create(model="prod-gpt4o", messages=MESSAGES)
    assert telemetry.stored()[1].provider == "azure.ai.openai"

    telemetry.clear()
    httpx2.post(f"{replay.url}/llm/v1/chat/completions?api-version=2024-10-21", json={"model": "m", "messages": []})
    assert telemetry.record()["gen_ai.provider.name"] == "azure.ai.openai"


# --- usage wherever each provider puts it --------------------------------------------------------------------------


def chunk(model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-0f3a",
        "object": "chat.completion.chunk",
        "created": 1764763200,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


GROQ_MODEL = "llama-3.3-70b-versatile"
GROQ_USAGE = {
    "queue_time": 0.0191,
    "prompt_tokens": 41,
    "prompt_time": 0.0026,
    "completion_tokens": 9,
    "completion_time": 0.0327,
    "total_tokens": 50,
    "total_time": 0.0353,
}


@pytest.mark.parametrize(
    ("provider", "model", "catalog", "events", "usage"),
    [
        pytest.param(
            "groq",
            GROQ_MODEL,
            "groq",
            [
                chunk(GROQ_MODEL, {"role": "assistant", "content": ""}, x_groq={"id": "req_01jeb"}),
                chunk(GROQ_MODEL, {"content": "Hello"}),
                chunk(GROQ_MODEL, {}, "stop", x_groq={"id": "req_01jeb", "usage": GROQ_USAGE}),
                "[DONE]",
            ],
            (41, 9, 0),
            id="groq-x_groq",
        ),
        pytest.param(
            "groq",
            GROQ_MODEL,
            "groq",
            [
                chunk(GROQ_MODEL, {"content": "Hello"}, usage=None),
                chunk(GROQ_MODEL, {}, "stop", usage=None, x_groq={"id": "req_01jeb", "usage": GROQ_USAGE}),
                "[DONE]",
            ],
            (41, 9, 0),
            id="groq-x_groq-usage-null",
        ),
        pytest.param(
            "mistral_ai",
            "mistral-small-latest",
            "mistral",
            [
                chunk("mistral-small-latest", {"role": "assistant", "content": ""}),
                chunk("mistral-small-latest", {"content": "Hello"}),
                chunk(
                    "mistral-small-latest",
                    {"content": ""},
                    "stop",
                    usage={"prompt_tokens": 9, "total_tokens": 19, "completion_tokens": 10},
                ),
                "[DONE]",
            ],
            (9, 10, 0),
            id="mistral",
        ),
        pytest.param(
            "together",
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "together",
            [
                chunk("meta-llama/Llama-3.3-70B-Instruct-Turbo", {"role": "assistant", "content": "Hi"}, usage=None),
                chunk(
                    "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                    {"content": ""},
                    "eos",
                    usage={"prompt_tokens": 43, "completion_tokens": 12, "total_tokens": 55, "cached_tokens": 0},
                ),
                "[DONE]",
            ],
            (43, 12, 0),
            id="together",
        ),
        pytest.param(
            "deepseek",
            "deepseek-chat",
            "deepseek",
            [
                chunk("deepseek-chat", {"role": "assistant", "content": "Hi"}),
                chunk("deepseek-chat", {"content": ""}, "stop"),
                {
                    "id": "chatcmpl-0f3a",
                    "object": "chat.completion.chunk",
                    "created": 1764763200,
                    "model": "deepseek-chat",
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 1200,
                        "completion_tokens": 80,
                        "total_tokens": 1280,
                        "prompt_tokens_details": {"cached_tokens": 1152},
                        "prompt_cache_hit_tokens": 1152,
                        "prompt_cache_miss_tokens": 48,
                    },
                },
                "[DONE]",
            ],
            (1200, 80, 1152),
            id="deepseek",
        ),
    ],
)
def test_streamed_usage_of_each_provider(telemetry, replay, provider, model, catalog, events, usage):
    telemetry.reinstrument(provider_hosts={replay.host: provider})
    replay.stream(events)
    client = openai.OpenAI(api_key="k", base_url=replay.url + "/v1")
    list(client.chat.completions.create(model=model, messages=MESSAGES, stream=True))
    attrs, record = telemetry.stored()
    assert record.provider == provider
    assert record.usage_source == "provider" and attrs["llmtally.stream.outcome"] == "completed"
    assert (record.input_tokens, record.output_tokens, record.cached_tokens) == usage
    assert record.priced and record.provider_cost_nusd == record_cost(record, catalog, model)


def test_groq_answer_with_its_tier(telemetry, replay):
    telemetry.reinstrument(provider_hosts={replay.host: "groq"})
    answer = chat_completion(GROQ_MODEL, GROQ_USAGE, service_tier="on_demand", x_groq={"id": "req_01jeb"})
    replay.answer(answer)
    openai.OpenAI(api_key="k", base_url=replay.url + "/openai/v1").chat.completions.create(
        model=GROQ_MODEL, messages=MESSAGES
    )
    record = telemetry.stored()[1]
    assert record.provider == "groq" and record.service_tier == "on_demand"
    assert (record.input_tokens, record.output_tokens, record.usage_source) == (41, 9, "provider")
    assert record.provider_cost_nusd == record_cost(record, "groq", GROQ_MODEL, {"service_tier": "on_demand"})


def test_embeddings_and_legacy_completions_usage(telemetry, replay):
    telemetry.reinstrument(provider_hosts={replay.host: "mistral_ai"})
    replay.answer(
        {
            "id": "embd-aad6fc62b17349b192ef09225058bc45",
            "object": "list",
            "data": [{"object": "embedding", "embedding": [0.1, -0.2], "index": 0}],
            "model": "mistral-embed",
            "usage": {"prompt_tokens": 6, "total_tokens": 6, "completion_tokens": 0},
        }
    )
    client = openai.OpenAI(api_key="k", base_url=replay.url + "/v1")
    client.embeddings.create(model="mistral-embed", input="hello", encoding_format="float")
    record = telemetry.stored()[1]
    assert (record.operation, record.input_tokens, record.usage_source) == ("embeddings", 6, "provider")
    assert record.priced

    telemetry.clear()
    telemetry.reinstrument(provider_hosts={replay.host: "together"})
    replay.stream(
        [
            {"id": "cmpl-1", "object": "text_completion", "model": "m", "choices": [{"index": 0, "text": "Hi"}]},
            {
                "id": "cmpl-1",
                "object": "text_completion",
                "model": "m",
                "choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21},
            },
            "[DONE]",
        ]
    )
    list(client.completions.create(model="m", prompt="Say", stream=True, max_tokens=16))
    record = telemetry.stored()[1]
    assert (record.operation, record.input_tokens, record.output_tokens) == ("text_completion", 5, 16)
    assert record.usage_source == "provider"
