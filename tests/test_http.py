"""The httpx2/httpx hook: OpenAI-compatible and native provider APIs called without an SDK."""

from __future__ import annotations

import asyncio
import json

import httpx
import httpx2
import openai
import pytest

from llmtally.demo.fake_provider import ANTHROPIC_USAGE, CHAT_USAGE, OLLAMA_USAGE
from llmtally.instrumentation.providers import provider_for

CHAT = {"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("library", [httpx2, httpx], ids=["httpx2", "httpx"])
def test_chat_json_and_sse(telemetry, provider, library):
    url = f"{provider.openai_base_url}/chat/completions"
    with library.Client() as http:
        answer = http.post(url, json=CHAT).json()
        assert answer["usage"]["prompt_tokens"] == CHAT_USAGE["prompt_tokens"]
        with http.stream("POST", url, json={**CHAT, "stream": True}) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    # The app did not ask for usage: llmtally asked for it and hid the extra chunk.
    assert all(json.loads(line[6:])["choices"] for line in lines)
    assert json.loads(provider.requests[-1].body)["stream_options"] == {"include_usage": True}
    records = telemetry.records()
    assert len(records) == 2
    for record in records:
        assert record["gen_ai.usage.input_tokens"] == CHAT_USAGE["prompt_tokens"]
        assert record["gen_ai.usage.output_tokens"] == CHAT_USAGE["completion_tokens"]
        assert record["gen_ai.usage.cache_read.input_tokens"] == 1024
        assert record["gen_ai.usage.reasoning.output_tokens"] == 128
        assert record["gen_ai.provider.name"] == "openai_compatible"
        assert record["llmtally.usage.source"] == "provider"
    assert records[1]["llmtally.stream.outcome"] == "completed"


def test_app_asking_for_usage_itself_sees_the_usage_chunk(telemetry, provider):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with httpx2.Client() as http, http.stream("POST", f"{provider.openai_base_url}/chat/completions", json=body) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == CHAT_USAGE["prompt_tokens"]
    assert telemetry.record()["gen_ai.usage.input_tokens"] == CHAT_USAGE["prompt_tokens"]


def test_stream_usage_injection_can_be_turned_off(telemetry, provider, monkeypatch):
    telemetry.reinstrument(stream_usage=False)
    with (
        httpx2.Client() as http,
        http.stream("POST", f"{provider.openai_base_url}/chat/completions", json={**CHAT, "stream": True}) as r,
    ):
        r.read()
    assert "stream_options" not in json.loads(provider.requests[-1].body)
    record = telemetry.record()
    # Tokens are never guessed: the record says the provider did not report them.
    assert record["llmtally.usage.source"] == "none"
    assert "gen_ai.usage.input_tokens" not in record


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
def test_ollama_native(telemetry, provider, stream, path):
    body = {"model": "llama3.2", "stream": stream}
    body |= {"messages": CHAT["messages"]} if path == "/api/chat" else {"prompt": "hi"}
    with httpx2.Client() as http:
        if stream:
            with http.stream("POST", provider.base_url + path, json=body) as r:
                lines = list(r.iter_lines())
            assert len(lines) > 2
        else:
            http.post(provider.base_url + path, json=body)
    record = telemetry.record()
    assert record["gen_ai.provider.name"] == "ollama"
    assert record["gen_ai.operation.name"] == ("chat" if path == "/api/chat" else "text_completion")
    assert record["gen_ai.usage.input_tokens"] == OLLAMA_USAGE["prompt_eval_count"]
    assert record["gen_ai.usage.output_tokens"] == OLLAMA_USAGE["eval_count"]
    assert record["gen_ai.request.stream"] is stream


def test_azure_deployment_path(telemetry, provider):
    url = f"{provider.base_url}/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
    httpx2.post(url, json={"messages": CHAT["messages"]})
    record = telemetry.record()
    assert record["gen_ai.provider.name"] == "azure.ai.openai"
    assert record["gen_ai.request.model"] == "prod-gpt4o"


def test_configured_host_names_the_provider(telemetry, provider, monkeypatch):
    host = f"127.0.0.1:{provider.base_url.rsplit(':', 1)[1]}"
    telemetry.reinstrument(provider_hosts={host: "vllm"})
    httpx2.post(f"{provider.openai_base_url}/chat/completions", json=CHAT)
    assert telemetry.record()["gen_ai.provider.name"] == "vllm"


def test_async_httpx(telemetry, provider):
    async def main():
        async with httpx.AsyncClient() as http:
            await http.post(f"{provider.openai_base_url}/chat/completions", json=CHAT)
            async with http.stream(
                "POST", f"{provider.openai_base_url}/chat/completions", json={**CHAT, "stream": True}
            ) as r:
                async for _ in r.aiter_bytes():
                    pass

    asyncio.run(main())
    records = telemetry.records()
    assert [r["llmtally.usage.source"] for r in records] == ["provider", "provider"]


def test_non_llm_requests_are_left_alone(telemetry, provider):
    with httpx2.Client() as http:
        http.get(f"{provider.openai_base_url}/models")
        http.post(f"{provider.base_url}/v1/chat/completions", content=b"not json")
        http.post(f"{provider.openai_base_url}/files", json={"purpose": "batch"})
    assert telemetry.records() == []
    assert telemetry.spans(scope=None) == []


def test_sdk_call_is_one_record_although_the_http_hook_also_sees_it(telemetry, provider):
    client = openai.OpenAI(base_url=provider.openai_base_url, api_key="sk-test-0123456789abcdef")
    client.chat.completions.create(model="gpt-4o-mini", messages=CHAT["messages"])
    assert len(telemetry.records()) == 1
    assert len(telemetry.spans(scope=None)) == 1
    assert telemetry.metric_sum("completion.requests.total") == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.openai.com/v1/chat/completions", "openai"),
        ("https://openrouter.ai/api/v1/chat/completions", "openrouter"),
        ("https://api.groq.com/openai/v1/chat/completions", "groq"),
        ("https://api.together.xyz/v1/chat/completions", "together"),
        ("https://api.mistral.ai/v1/chat/completions", "mistral_ai"),
        ("https://api.deepseek.com/chat/completions", "deepseek"),
        ("https://api.x.ai/v1/chat/completions", "x_ai"),
        ("https://api.fireworks.ai/inference/v1/chat/completions", "fireworks"),
        ("https://myres.openai.azure.com/openai/deployments/d/chat/completions", "azure.ai.openai"),
        ("http://localhost:11434/v1/chat/completions", "ollama"),
        ("http://vllm.internal:8000/v1/chat/completions", "vllm"),
        ("https://api.anthropic.com/v1/messages", "anthropic"),
    ],
)
def test_provider_named_from_the_base_url(url, expected):
    parsed = httpx2.URL(url)
    assert provider_for(parsed.host, parsed.port, parsed.path, default=None, overrides={}) == expected


def test_anthropic_messages_over_plain_http_sse(telemetry, provider):
    body = {"model": "claude-haiku-4-5", "max_tokens": 32, "messages": CHAT["messages"], "stream": True}
    headers = {"x-api-key": "sk-ant-plain-http-secret-000", "anthropic-version": "2023-06-01"}
    with (
        httpx2.Client() as http,
        http.stream("POST", f"{provider.base_url}/v1/messages", json=body, headers=headers) as r,
    ):
        text = r.read().decode()
    assert "message_stop" in text
    record = telemetry.record()
    assert record["gen_ai.provider.name"] == "anthropic"
    assert record["gen_ai.usage.output_tokens"] == ANTHROPIC_USAGE["output_tokens"]
    assert record["gen_ai.usage.cache_read.input_tokens"] == ANTHROPIC_USAGE["cache_read_input_tokens"]
    assert record["llmtally.stream.outcome"] == "completed"
    assert "stream_options" not in json.loads(provider.requests[-1].body)
    assert record["llmtally.api_key"].startswith("sha256:")
