"""Gemini's API called over raw HTTP (httpx2, httpx) and through LiteLLM's Gemini route, against the fake provider:
`:generateContent`, `:streamGenerateContent` with and without `alt=sse`, embeddings, errors and streams closed early;
exactly one record per call, priced as genai-prices prices the same answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx
import httpx2
import pytest

from llmtally.demo.fake_gemini import GEMINI_EMBED_USAGE, GEMINI_USAGE, REPLY_TEXT, reply_text
from llmtally.instrumentation.keys import key_id
from pricing_helpers import answer_cost

KEY = "AIzaSy-test-secret-0123456789abcdefghij"
MODEL = "gemini-2.5-flash"
BODY = {
    "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
    "generationConfig": {"temperature": 0.2, "topP": 0.8, "topK": 20, "maxOutputTokens": 128, "stopSequences": ["x"]},
}
PROMPT = GEMINI_USAGE["promptTokenCount"]
OUTPUT = GEMINI_USAGE["candidatesTokenCount"] + GEMINI_USAGE["thoughtsTokenCount"]
LIBRARIES = {"httpx2": httpx2, "httpx": httpx}


def url(provider, method: str, model: str = MODEL, query: str = "") -> str:
    return f"{provider.base_url}/v1beta/models/{model}:{method}" + (f"?{query}" if query else "")


def headers() -> dict[str, str]:
    return {"x-goog-api-key": KEY}


def assert_usage(record: Mapping[str, Any]) -> None:
    assert record["gen_ai.usage.input_tokens"] == PROMPT
    assert record["gen_ai.usage.output_tokens"] == OUTPUT
    assert record["gen_ai.usage.cache_read.input_tokens"] == GEMINI_USAGE["cachedContentTokenCount"]
    assert record["gen_ai.usage.reasoning.output_tokens"] == GEMINI_USAGE["thoughtsTokenCount"]
    assert record["llmtally.usage.total_tokens"] == GEMINI_USAGE["totalTokenCount"]


def assert_stream_record(telemetry: Any, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The only record, of a stream read to its end, priced as genai-prices prices its last chunk."""
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["llmtally.stream.outcome"] == "completed"
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["gen_ai.response.id"] == chunks[0]["responseId"]
    assert attrs["gen_ai.response.finish_reasons"] == ("STOP",)
    assert_usage(attrs)
    assert record.provider_cost_nusd == answer_cost(chunks[-1], MODEL, "google", record, named=True)
    return attrs


# --- raw HTTP ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
def test_generate_content(telemetry, provider, library):
    with LIBRARIES[library].Client() as client:
        answer = client.post(url(provider, "generateContent"), json=BODY, headers=headers()).json()
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == REPLY_TEXT
    (span,) = telemetry.spans(scope=None)
    assert span.name == f"generate_content {MODEL}"
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.provider.name"] == "gcp.gemini"
    assert attrs["gen_ai.operation.name"] == "generate_content"
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["gen_ai.response.model"] == answer["modelVersion"]
    assert attrs["gen_ai.response.id"] == answer["responseId"]
    assert attrs["gen_ai.response.finish_reasons"] == ("STOP",)
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.request.top_p"] == 0.8
    assert attrs["gen_ai.request.top_k"] == 20
    assert attrs["gen_ai.request.max_tokens"] == 128
    assert attrs["gen_ai.request.stop_sequences"] == ("x",)
    assert attrs["gen_ai.request.stream"] is False
    assert attrs["llmtally.api_key"] == key_id(KEY)
    assert attrs["llmtally.usage.source"] == "provider"
    assert_usage(attrs)
    assert record.priced and record.provider_cost_nusd == answer_cost(answer, MODEL, "google", record, named=True)


@pytest.mark.parametrize("library", LIBRARIES)
def test_sse_stream(telemetry, provider, library):
    chunks = []
    with LIBRARIES[library].Client() as client:
        target = url(provider, "streamGenerateContent", query="alt=sse")
        with client.stream("POST", target, json=BODY, headers={**headers(), "x-fake-chunks": "6"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    chunks.append(json.loads(line[6:]))
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == reply_text(6)
    attrs = assert_stream_record(telemetry, chunks)
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0


def test_json_array_stream(telemetry, provider):
    target = url(provider, "streamGenerateContent")
    with httpx2.Client() as client, client.stream("POST", target, json=BODY, headers=headers()) as response:
        assert response.headers["content-type"].startswith("application/json")
        chunks = json.loads(response.read())
    assert isinstance(chunks, list) and len(chunks) == 5
    assert_stream_record(telemetry, chunks)


def test_async_sse_stream_on_a_vertex_path(telemetry, provider):
    target = (
        f"{provider.base_url}/v1/projects/acme/locations/us-central1/publishers/google/models/{MODEL}"
        ":streamGenerateContent?alt=sse"
    )

    async def main() -> None:
        async with (
            httpx.AsyncClient() as client,
            client.stream("POST", target, json=BODY, headers={"authorization": "Bearer ya29.x"}) as answer,
        ):
            async for _ in answer.aiter_bytes():
                pass

    asyncio.run(main())
    attrs = telemetry.record()
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["llmtally.stream.outcome"] == "completed"
    assert_usage(attrs)


def test_sse_stream_closed_early_is_partial(telemetry, provider):
    target = url(provider, "streamGenerateContent", query="alt=sse")
    more = {**headers(), "x-fake-chunks": "20"}
    with httpx2.Client() as client, client.stream("POST", target, json=BODY, headers=more) as response:
        for _ in response.iter_lines():
            break
    telemetry.closed_early(PROMPT)


def test_error_event_inside_a_stream(telemetry, provider):
    target = url(provider, "streamGenerateContent", query="alt=sse")
    with httpx2.Client() as client:
        client.post(target, json=BODY, headers={**headers(), "x-fake-stream-error": "429"})
    attrs = telemetry.record()
    assert attrs["error.type"] == "rate_limit"
    assert attrs["llmtally.error.message"] == "Fake RESOURCE_EXHAUSTED (HTTP 429)."


@pytest.mark.parametrize(
    ("status", "error_type"), [(429, "rate_limit"), (400, "invalid_request"), (503, "server_error")]
)
def test_error_answers(telemetry, provider, status, error_type):
    provider.fail_next(status)
    with httpx2.Client() as client:
        answer = client.post(url(provider, "generateContent"), json=BODY, headers=headers())
    assert answer.status_code == status
    attrs = telemetry.record()
    assert attrs["error.type"] == error_type
    assert attrs["http.response.status_code"] == status
    assert attrs["llmtally.error.message"] == answer.json()["error"]["message"]
    assert attrs["llmtally.usage.source"] == "none"


def test_embeddings_and_token_counts(telemetry, provider):
    with httpx2.Client() as client:
        single = {"content": {"parts": [{"text": "one"}]}}
        client.post(url(provider, "embedContent", "gemini-embedding-001"), json=single, headers=headers())
        batch = {"requests": [{"model": "models/gemini-embedding-001", **single}] * 2}
        client.post(url(provider, "batchEmbedContents", "gemini-embedding-001"), json=batch, headers=headers())
        client.post(url(provider, "countTokens"), json=BODY, headers=headers())
    records = telemetry.records()
    assert len(provider.requests) == 3 and len(records) == 2
    for record in records:
        assert record["gen_ai.operation.name"] == "embeddings"
        assert record["gen_ai.request.model"] == "gemini-embedding-001"
        assert record["gen_ai.usage.input_tokens"] == GEMINI_EMBED_USAGE["promptTokenCount"]


def test_the_sdk_over_the_http_hook_alone(telemetry, provider):
    """With only `llmtally_http` on, google-genai's sync calls (httpx2) are recorded from the wire, the same."""
    from google import genai
    from google.genai import types

    telemetry.reinstrument(hooks=("http",))
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=provider.base_url))
    client.models.generate_content(model=MODEL, contents="hi")
    list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    records = telemetry.records()
    assert [r["gen_ai.request.stream"] for r in records] == [False, True]
    for record in records:
        assert record["gen_ai.provider.name"] == "gcp.gemini"
        assert record["llmtally.api_key"] == key_id(KEY)
        assert record["llmtally.usage.source"] == "provider"
        assert_usage(record)


def test_only_the_first_last_and_error_chunks_are_parsed(monkeypatch):
    """The stream's hot path: a chunk that carries only text is told by a byte test and passed over unparsed."""
    from llmtally.instrumentation.apis import gemini
    from llmtally.instrumentation.reader import ResponseReader

    parsed: list[bytes | str] = []
    real = gemini.loads
    monkeypatch.setattr(gemini, "loads", lambda data: parsed.append(data) or real(data))
    head = {"modelVersion": MODEL, "responseId": "r-1"}
    text = {"candidates": [{"content": {"parts": [{"text": "word"}], "role": "model"}, "index": 0}]}
    last = {"candidates": [{"content": {"parts": [], "role": "model"}, "finishReason": "STOP", "index": 0}]}
    partial = {"usageMetadata": {"promptTokenCount": PROMPT, "totalTokenCount": PROMPT + 1}}
    chunks = [{**text, **partial, **head}] * 50 + [{**last, "usageMetadata": GEMINI_USAGE, **head}]
    reader = ResponseReader(gemini.GENERATE_CONTENT)
    reader.start_stream("text/event-stream", 200)
    for chunk in chunks:
        reader.feed(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
    reader.end_stream(200)
    assert len(parsed) == 2
    answer = reader.answer
    assert answer.response_id == "r-1" and answer.finish_reasons == ["STOP"] and answer.saw_end
    assert answer.usage is not None and answer.usage.input == PROMPT and answer.usage.output == OUTPUT


# --- LiteLLM's Gemini route ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_litellm_completion(telemetry, provider, litellm, stream):
    answer = litellm.completion(
        model=f"gemini/{MODEL}",
        messages=[{"role": "user", "content": "Say hello"}],
        api_base=provider.base_url + "/v1beta",
        api_key=KEY,
        temperature=0.4,
        stream=stream,
    )
    if stream:
        assert "".join(chunk.choices[0].delta.content or "" for chunk in answer) == reply_text()
        assert provider.requests[0].path == f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    else:
        assert answer.choices[0].message.content == REPLY_TEXT
        assert provider.requests[0].path == f"/v1beta/models/{MODEL}:generateContent"
    assert len(telemetry.spans(scope=None)) == 1
    attrs = telemetry.record()
    assert attrs["gen_ai.provider.name"] == "gcp.gemini"
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["gen_ai.request.temperature"] == 0.4
    assert attrs["gen_ai.request.stream"] is stream
    assert attrs["llmtally.api_key"] == key_id(KEY)
    assert attrs["llmtally.usage.source"] == "provider"
    assert_usage(attrs)
    if stream:
        assert attrs["llmtally.stream.outcome"] == "completed"
