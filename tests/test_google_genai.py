"""The google-genai hook, driven through the real SDK over HTTP to the fake provider's Gemini API: the Gemini API
and Vertex AI, sync and async on both async transports (aiohttp, httpx), streamed and not, chats, embeddings,
errors, SDK retries, streams closed early, hard budgets, and each record's cost against genai-prices."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping
from typing import Any

import httpx
import httpx2
import pytest
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials
from test_budget_enforcement import BudgetServer, budget

import llmtally
from conftest import SAMPLING, sampling_parameters
from llmtally.demo.fake_gemini import (
    GEMINI_EMBED_USAGE,
    GEMINI_IMAGE_USAGE,
    GEMINI_MEDIA_USAGE,
    GEMINI_USAGE,
    REPLY_TEXT,
    reply_text,
)
from llmtally.instrumentation.keys import key_id
from pricing_helpers import answer_cost, extracted_usage

KEY = "AIzaSy-test-secret-0123456789abcdefghij"
MODEL = "gemini-2.5-flash"
EMBEDDER = "gemini-embedding-001"
NO_RETRY = types.HttpRetryOptions(attempts=1)


def retrying(attempts: int) -> types.HttpRetryOptions:
    return types.HttpRetryOptions(attempts=attempts, initial_delay=0.0, max_delay=0.0, jitter=0.0)


_clients: list[genai.Client] = []


@pytest.fixture(autouse=True)
def _keep_clients() -> Any:
    """Keeps each test's clients open until it ends (a dropped `genai.Client` closes its HTTP clients)."""
    yield
    _clients.clear()


def gemini(provider, **options: Any) -> genai.Client:
    options.setdefault("retry_options", NO_RETRY)
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=provider.base_url, **options))
    _clients.append(client)
    return client


def vertex(provider, **options: Any) -> genai.Client:
    options.setdefault("retry_options", NO_RETRY)
    client = genai.Client(
        vertexai=True,
        project="acme-prod",
        location="us-central1",
        credentials=Credentials(token="ya29.fake-access-token"),
        http_options=types.HttpOptions(base_url=provider.base_url, **options),
    )
    _clients.append(client)
    return client


def input_tokens(usage: Mapping[str, Any]) -> int:
    return usage["promptTokenCount"] + usage.get("toolUsePromptTokenCount", 0)


def output_tokens(usage: Mapping[str, Any]) -> int:
    return usage["candidatesTokenCount"] + usage.get("thoughtsTokenCount", 0)


def assert_usage(record: Mapping[str, Any], usage: Mapping[str, Any] = GEMINI_USAGE) -> None:
    assert record["gen_ai.usage.input_tokens"] == input_tokens(usage)
    assert record["gen_ai.usage.output_tokens"] == output_tokens(usage)
    assert record["gen_ai.usage.cache_read.input_tokens"] == usage.get("cachedContentTokenCount", 0)
    assert record["gen_ai.usage.cache_creation.input_tokens"] == 0
    assert record["gen_ai.usage.reasoning.output_tokens"] == usage.get("thoughtsTokenCount", 0)
    assert record["llmtally.usage.total_tokens"] == usage["totalTokenCount"]


def assert_secret_kept(record: Mapping[str, Any]) -> None:
    assert record["llmtally.api_key"] == key_id(KEY)
    assert all(KEY not in str(value) for value in record.values())


# --- the Gemini API, sync ---------------------------------------------------------------------------------------


def test_generate_content_is_one_record(telemetry, provider):
    config = types.GenerateContentConfig(candidate_count=2, **sampling_parameters(max_tokens="max_output_tokens"))
    answer = gemini(provider).models.generate_content(model=MODEL, contents="Say hello", config=config)
    assert answer.text == REPLY_TEXT
    (span,) = telemetry.spans(scope=None)
    assert span.name == f"generate_content {MODEL}"
    record = telemetry.record()
    assert dict(span.attributes or {}) == record
    assert record["gen_ai.operation.name"] == "generate_content"
    assert record["gen_ai.provider.name"] == "gcp.gemini"
    assert record["gen_ai.request.model"] == MODEL
    assert record["gen_ai.response.model"] == answer.model_version == MODEL
    assert record["gen_ai.response.id"] == answer.response_id
    assert record["gen_ai.response.finish_reasons"] == ("STOP", "STOP")
    assert record["gen_ai.request.stream"] is False
    assert {name: record.get(name) for name in SAMPLING} == SAMPLING
    assert record["gen_ai.request.choice.count"] == 2
    assert record["server.address"] == "127.0.0.1" and record["server.port"] == provider.port
    assert record["http.response.status_code"] == 200
    assert record["llmtally.usage.source"] == "provider"
    assert "error.type" not in record
    assert_usage(record)
    assert_secret_kept(record)
    assert len(provider.requests) == 1
    assert telemetry.metric_sum("completion.requests.success", {"gen_ai.provider.name": "gcp.gemini"}) == 1
    assert telemetry.metric_sum("completion.tokens.cached") == GEMINI_USAGE["cachedContentTokenCount"]
    assert telemetry.metric_sum("completion.tokens.reasoning") == GEMINI_USAGE["thoughtsTokenCount"]


def test_token_counting_and_other_requests_are_no_llm_calls(telemetry, provider):
    client = gemini(provider)
    assert client.models.count_tokens(model=MODEL, contents="Say hello").total_tokens == 31
    assert len(provider.requests) == 1
    assert telemetry.records() == [] and telemetry.spans(scope=None) == []


def test_stream_is_one_record_with_the_last_chunks_usage(telemetry, provider):
    client = gemini(provider, headers={"x-fake-chunks": "7"})
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Say hello"))
    assert "".join(c.text or "" for c in chunks) == reply_text(7)
    record = telemetry.record()
    assert record["gen_ai.request.stream"] is True
    assert record["llmtally.stream.outcome"] == "completed"
    assert record["llmtally.usage.source"] == "provider"
    assert record["gen_ai.response.time_to_first_chunk"] > 0
    assert record["gen_ai.response.finish_reasons"] == ("STOP",)
    assert record["gen_ai.response.id"] == chunks[0].response_id
    assert_usage(record)
    assert_secret_kept(record)
    assert telemetry.metric_sum("completion.time_to_first_token") == 1


def test_chats_send_message_and_stream(telemetry, provider):
    chat = gemini(provider).chats.create(model=MODEL)
    assert chat.send_message("hi").text == REPLY_TEXT
    assert "".join(c.text or "" for c in chat.send_message_stream("again")) == reply_text()
    records = telemetry.records()
    assert [r["gen_ai.request.stream"] for r in records] == [False, True]
    for record in records:
        assert record["gen_ai.operation.name"] == "generate_content"
        assert_usage(record)
    # The second turn sent the whole history, as one request.
    assert len(provider.requests) == 2 and len(provider.requests[1].json["contents"]) == 3


def test_embed_content(telemetry, provider):
    answer = gemini(provider).models.embed_content(model=EMBEDDER, contents=["first", "second"])
    assert len(answer.embeddings or []) == 2
    assert provider.requests[0].path.endswith(f"/models/{EMBEDDER}:batchEmbedContents")
    (span,) = telemetry.spans(scope=None)
    assert span.name == f"embeddings {EMBEDDER}"
    record = telemetry.record()
    assert record["gen_ai.operation.name"] == "embeddings"
    assert record["gen_ai.request.model"] == EMBEDDER
    assert record["gen_ai.usage.input_tokens"] == GEMINI_EMBED_USAGE["promptTokenCount"]
    assert record["gen_ai.usage.output_tokens"] == 0
    assert record["llmtally.usage.source"] == "provider"


def test_content_capture(telemetry, provider):
    telemetry.reinstrument(capture_content=True)
    list(gemini(provider).models.generate_content_stream(model=MODEL, contents="What is the secret word?"))
    record = telemetry.record()
    assert "What is the secret word?" in record["gen_ai.input.messages"]
    assert REPLY_TEXT in record["gen_ai.output.messages"]
    assert_usage(record)


# --- Vertex AI ------------------------------------------------------------------------------------------------


def test_vertex_mode_is_vertex_ai(telemetry, provider):
    client = vertex(provider)
    answer = client.models.generate_content(model=MODEL, contents="Say hello")
    list(client.models.generate_content_stream(model=MODEL, contents="Say hello"))
    client.models.embed_content(model=EMBEDDER, contents="one")
    paths = [r.path.split("?")[0] for r in provider.requests]
    prefix = "/v1beta1/projects/acme-prod/locations/us-central1/publishers/google/models/"
    assert paths == [
        f"{prefix}{MODEL}:generateContent",
        f"{prefix}{MODEL}:streamGenerateContent",
        f"{prefix}{EMBEDDER}:embedContent",
    ]
    records = telemetry.records()
    assert [r["gen_ai.provider.name"] for r in records] == ["gcp.vertex_ai"] * 3
    assert [r["gen_ai.request.model"] for r in records] == [MODEL, MODEL, EMBEDDER]
    assert [r["gen_ai.operation.name"] for r in records] == ["generate_content", "generate_content", "embeddings"]
    assert records[0]["gen_ai.response.id"] == answer.response_id
    assert_usage(records[0])
    assert_usage(records[1])
    assert records[2]["gen_ai.usage.input_tokens"] == GEMINI_EMBED_USAGE["promptTokenCount"]
    # An OAuth access token is no API key: nothing is named after it.
    assert all("llmtally.api_key" not in r for r in records)
    assert all("ya29" not in str(v) for r in records for v in r.values())


def test_the_configured_host_map_wins_over_the_client_mode(telemetry, provider):
    telemetry.reinstrument(provider_hosts={f"127.0.0.1:{provider.port}": "acme-gateway"})
    vertex(provider).models.generate_content(model=MODEL, contents="hi")
    gemini(provider).models.generate_content(model=MODEL, contents="hi")
    assert [r["gen_ai.provider.name"] for r in telemetry.records()] == ["acme-gateway", "acme-gateway"]


# --- async, on both transports ------------------------------------------------------------------------------------

# How the async client's transport is chosen (see `BaseApiClient._use_aiohttp`): aiohttp when it is installed,
# unless the options name an httpx transport or client. New objects per test: their pools belong to one event loop.
TRANSPORTS = {
    "aiohttp": dict,
    "httpx2-transport": lambda: {"async_client_args": {"transport": httpx2.AsyncHTTPTransport()}},
    "httpx-client": lambda: {"httpx_async_client": httpx.AsyncClient()},
}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_async_on_each_transport(telemetry, provider, transport):
    client = gemini(provider, **TRANSPORTS[transport]())
    assert client._api_client._use_aiohttp() is (transport == "aiohttp")

    async def main() -> None:
        answer = await client.aio.models.generate_content(model=MODEL, contents="hi")
        assert answer.text == REPLY_TEXT
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
        assert "".join([c.text or "" async for c in stream]) == reply_text()
        chat = client.aio.chats.create(model=MODEL)
        await chat.send_message("hi")
        await client.aio.models.embed_content(model=EMBEDDER, contents="one")
        await client.aio.aclose()

    asyncio.run(main())
    assert len(provider.requests) == 4
    # One span per call in any scope: the httpx hook (llmtally_http is on) stays out of the SDK hook's calls.
    assert len(telemetry.spans(scope=None)) == 4
    records = telemetry.records()
    assert [r["gen_ai.request.stream"] for r in records] == [False, True, False, False]
    assert [r["gen_ai.operation.name"] for r in records][-1] == "embeddings"
    assert all("http.request.resend_count" not in r for r in records)
    for record in records[:3]:
        assert record["llmtally.usage.source"] == "provider"
        assert_usage(record)
        assert_secret_kept(record)
    assert records[1]["llmtally.stream.outcome"] == "completed"


def test_sync_calls_over_httpx_make_one_record_with_the_http_hook_on(telemetry, provider):
    client = gemini(provider, httpx_client=httpx.Client())
    client.models.generate_content(model=MODEL, contents="hi")
    list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    assert len(telemetry.spans(scope=None)) == 2
    records = telemetry.records()
    assert len(records) == 2
    for record in records:  # each attempt was seen once: by the SDK hook alone
        assert "http.request.resend_count" not in record
        assert_usage(record)


# --- errors and retries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "raised"),
    [
        (429, "rate_limit", errors.ClientError),
        (400, "invalid_request", errors.ClientError),
        (500, "server_error", errors.ServerError),
    ],
)
def test_error_answers(telemetry, provider, status, error_type, raised):
    provider.fail_next(status)
    with pytest.raises(raised) as failed:
        gemini(provider).models.generate_content(model=MODEL, contents="hi")
    assert failed.value.code == status
    record = telemetry.record()
    assert record["error.type"] == error_type
    assert record["http.response.status_code"] == status
    assert record["llmtally.usage.source"] == "none"
    assert record["llmtally.error.message"] == failed.value.message
    assert "http.request.resend_count" not in record
    assert telemetry.metric_sum("completion.requests.error", {"error.type": error_type}) == 1
    assert telemetry.metric_sum("completion.requests.success") == 0


@pytest.mark.parametrize("transport", ["aiohttp", "httpx2-transport"])
def test_async_error_answers(telemetry, provider, transport):
    provider.fail_next(429)
    provider.fail_next(500)
    client = gemini(provider, **TRANSPORTS[transport]())

    async def main() -> None:
        with pytest.raises(errors.ClientError):
            await client.aio.models.generate_content(model=MODEL, contents="hi")
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
        with pytest.raises(errors.ServerError):
            async for _ in stream:
                pass

    asyncio.run(main())
    records = telemetry.records()
    assert [r["error.type"] for r in records] == ["rate_limit", "server_error"]
    assert [r["http.response.status_code"] for r in records] == [429, 500]
    assert records[1]["gen_ai.request.stream"] is True
    assert "llmtally.stream.outcome" not in records[1]  # an error answer to a streamed request is no stream


@pytest.mark.parametrize("transport", ["aiohttp", "httpx2-transport"])
def test_async_connection_errors(telemetry, provider, transport):
    provider.drop_next(times=2)
    client = gemini(provider, **TRANSPORTS[transport]())

    async def main() -> None:
        with pytest.raises(Exception):  # noqa: B017 (aiohttp's or httpx2's own error)
            await client.aio.models.generate_content(model=MODEL, contents="hi")
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
        with pytest.raises(Exception):  # noqa: B017
            await anext(stream)
        await client.aio.aclose()

    asyncio.run(main())
    records = telemetry.records()
    assert [r["error.type"] for r in records] == ["connection_error", "connection_error"]
    assert all("http.response.status_code" not in r and r["llmtally.usage.source"] == "none" for r in records)


def test_retries_are_one_record_with_retry_events(telemetry, provider):
    provider.fail_next(503, times=2)
    answer = gemini(provider, retry_options=retrying(3)).models.generate_content(model=MODEL, contents="hi")
    assert answer.text == REPLY_TEXT
    assert len(provider.requests) == 3
    record = telemetry.record()
    assert record["http.request.resend_count"] == 2
    assert "error.type" not in record
    assert record["http.response.status_code"] == 200
    assert_usage(record)
    (span,) = telemetry.spans(scope=None)
    assert [e.name for e in span.events] == ["llmtally.retry", "llmtally.retry"]
    assert [e.attributes["http.response.status_code"] for e in span.events] == [503, 503]
    assert [e.attributes["error.type"] for e in span.events] == ["server_error", "server_error"]


def test_retries_that_all_fail_are_one_error_record(telemetry, provider):
    provider.fail_next(429, times=3)
    with pytest.raises(errors.ClientError):
        list(gemini(provider, retry_options=retrying(3)).models.generate_content_stream(model=MODEL, contents="hi"))
    assert len(provider.requests) == 3
    record = telemetry.record()
    assert record["http.request.resend_count"] == 2
    assert record["error.type"] == "rate_limit"


@pytest.mark.parametrize("transport", ["aiohttp", "httpx2-transport"])
def test_async_retries(telemetry, provider, transport):
    provider.fail_next(500)
    client = gemini(provider, retry_options=retrying(2), **TRANSPORTS[transport]())

    async def main() -> None:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
        assert "".join([c.text or "" async for c in stream]) == reply_text()

    asyncio.run(main())
    assert len(provider.requests) == 2
    record = telemetry.record()
    assert record["http.request.resend_count"] == 1
    assert record["llmtally.stream.outcome"] == "completed"
    assert "error.type" not in record
    assert_usage(record)


def test_error_inside_a_stream(telemetry, provider):
    client = gemini(provider, headers={"x-fake-stream-error": "500"})
    seen = []
    with pytest.raises(errors.ServerError):
        for chunk in client.models.generate_content_stream(model=MODEL, contents="hi"):
            seen.append(chunk.text)
    assert len(seen) == 2
    record = telemetry.record()
    assert record["error.type"] == "server_error"
    assert record["llmtally.error.message"] == "Fake INTERNAL (HTTP 500)."
    assert record["llmtally.stream.outcome"] == "failed"
    assert record["llmtally.usage.source"] == "partial"
    assert record["http.response.status_code"] == 200


@pytest.mark.parametrize("transport", ["aiohttp", "httpx-client"])
def test_async_error_inside_a_stream(telemetry, provider, transport):
    client = gemini(provider, headers={"x-fake-stream-error": "429"}, **TRANSPORTS[transport]())

    async def main() -> None:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
        with pytest.raises(errors.ClientError):
            async for _ in stream:
                pass
        await client.aio.aclose()

    asyncio.run(main())
    record = telemetry.record()
    assert record["error.type"] == "rate_limit"
    assert record["llmtally.stream.outcome"] == "failed"
    assert record["llmtally.error.message"] == "Fake RESOURCE_EXHAUSTED (HTTP 429)."


# --- streams closed early ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "dropped"])
def test_stream_closed_early_or_dropped_is_partial_and_ends_the_call_once(telemetry, provider, closed):
    client = gemini(provider, headers={"x-fake-chunks": "20"})
    stream = client.models.generate_content_stream(model=MODEL, contents="hi")
    assert next(stream).text == "Hello"
    assert telemetry.records() == []  # still open
    if closed:
        stream.close()
    else:
        del stream
        gc.collect()
    telemetry.closed_early(GEMINI_USAGE["promptTokenCount"])
    if closed:
        stream.close()
        assert len(telemetry.records()) == 1


async def ended(telemetry: Any) -> None:
    """Waits for the one record of a stream the app let go of: the event loop closes async generators an app drops
    or closes in tasks of its own, layer by layer. Fails unless it comes while the app runs (not at its exit)."""
    gc.collect()
    for _ in range(50):
        if telemetry.records():
            break
        await asyncio.sleep(0)
    assert len(telemetry.records()) == 1


@pytest.mark.parametrize(
    ("transport", "closed"),
    [("aiohttp", True), ("httpx2-transport", True), ("aiohttp", False)],
    ids=["aiohttp-closed", "httpx2-transport-closed", "aiohttp-dropped"],
)
def test_async_stream_closed_early_or_dropped_is_partial(telemetry, provider, transport, closed):
    client = gemini(provider, headers={"x-fake-chunks": "20"}, **TRANSPORTS[transport]())

    async def main() -> None:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
        assert provider.requests == []  # sent when first iterated
        await anext(stream)
        if closed:
            await stream.aclose()
        else:
            del stream
        await ended(telemetry)
        await client.aio.aclose()

    asyncio.run(main())
    telemetry.closed_early(GEMINI_USAGE["promptTokenCount"])
    assert len(provider.requests) == 1


# --- hard budgets ---------------------------------------------------------------------------------------------


def test_a_hard_budget_refuses_the_call_before_anything_is_sent(telemetry, provider):
    state = BudgetServer().start()
    try:
        state.budgets = [budget("gemini", spent=2.0, limit=1.0, scope={"provider": "gcp.gemini"})]
        telemetry.reinstrument(budgets_url=state.url, budgets_refresh_seconds=0.1)
        from llmtally.instrumentation import budgets

        enforcer = budgets.active()
        assert enforcer is not None
        enforcer.refresh()
        client = gemini(provider)
        with pytest.raises(llmtally.BudgetExceeded):
            client.models.generate_content(model=MODEL, contents="hi")
        with pytest.raises(llmtally.BudgetExceeded):
            list(client.models.generate_content_stream(model=MODEL, contents="hi"))

        async def main() -> None:
            with pytest.raises(llmtally.BudgetExceeded):
                await client.aio.models.generate_content(model=MODEL, contents="hi")
            stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
            with pytest.raises(llmtally.BudgetExceeded):
                await anext(stream)
            await client.aio.aclose()

        asyncio.run(main())
        assert provider.requests == []
        assert telemetry.records() == []
        # Another provider's budget does not apply: Vertex AI calls pass.
        vertex(provider).models.generate_content(model=MODEL, contents="hi")
        assert telemetry.record()["gen_ai.provider.name"] == "gcp.vertex_ai"
    finally:
        state.stop()


# --- costs, as the receiver prices them ---------------------------------------------------------------------------


def test_text_answer_cost(telemetry, provider):
    gemini(provider).models.generate_content(model=MODEL, contents="hi")
    _, record = telemetry.stored()
    assert record.priced and record.provider_cost_nusd > 0
    answer = {"usageMetadata": GEMINI_USAGE, "modelVersion": MODEL}
    assert record.provider_cost_nusd == answer_cost(answer, MODEL, "google", record, named=True)


def test_streamed_answer_cost_is_the_last_chunks(telemetry, provider):
    list(vertex(provider).models.generate_content_stream(model=MODEL, contents="hi"))
    _, record = telemetry.stored()
    assert record.provider == "gcp.vertex_ai"
    answer = {"usageMetadata": GEMINI_USAGE, "modelVersion": MODEL}
    assert record.provider_cost_nusd == answer_cost(answer, MODEL, "google", record, named=True)


def test_embeddings_cost(telemetry, provider):
    gemini(provider).models.embed_content(model=EMBEDDER, contents="one")
    _, record = telemetry.stored()
    answer = {"usageMetadata": GEMINI_EMBED_USAGE, "modelVersion": EMBEDDER}
    assert record.priced and record.provider_cost_nusd == answer_cost(answer, EMBEDDER, "google", record, named=True)


def test_media_answer_units_and_cost(telemetry, provider):
    """Image, audio and video prompt tokens, cached audio and tool-use prompt tokens: each unit genai-prices' google
    extractor reads is on the record under its usage key. The cost needs the receiver to price `llmtally.usage.unit.*`
    (cached audio is priced apart)."""
    picture = types.Part.from_bytes(data=b"\x89PNG fake", mime_type="image/png")
    gemini(provider).models.generate_content(model=MODEL, contents=[picture, "What is this?"])
    attrs, record = telemetry.stored()
    assert_usage(attrs, GEMINI_MEDIA_USAGE)
    answer = {"usageMetadata": GEMINI_MEDIA_USAGE, "modelVersion": MODEL}
    expected = extracted_usage(answer, "google", model=MODEL)
    prefix = "llmtally.usage.unit."
    units = {k.removeprefix(prefix): v for k, v in attrs.items() if k.startswith(prefix)}
    units["input_audio_tokens"] = attrs["llmtally.usage.audio.input_tokens"]
    units["input_tokens"] = attrs["gen_ai.usage.input_tokens"]
    units["output_tokens"] = attrs["gen_ai.usage.output_tokens"]
    units["cache_read_tokens"] = attrs["gen_ai.usage.cache_read.input_tokens"]
    units["output_reasoning_tokens"] = attrs["gen_ai.usage.reasoning.output_tokens"]
    reported = {k: v for k, v in vars(expected).items() if v}
    assert units == reported
    assert record.provider_cost_nusd == answer_cost(answer, MODEL, "google", record, named=True)


def test_image_output_cost(telemetry, provider):
    """Output image tokens are priced at the image rate (needs the receiver to price `llmtally.usage.unit.*`)."""
    model = "gemini-2.5-flash-image"
    config = types.GenerateContentConfig(response_modalities=["IMAGE"])
    gemini(provider).models.generate_content(model=model, contents="A cat", config=config)
    attrs, record = telemetry.stored()
    assert attrs["llmtally.usage.unit.output_image_tokens"] == GEMINI_IMAGE_USAGE["candidatesTokenCount"]
    answer = {"usageMetadata": GEMINI_IMAGE_USAGE, "modelVersion": model}
    assert record.provider_cost_nusd == answer_cost(answer, model, "google", record, named=True)
