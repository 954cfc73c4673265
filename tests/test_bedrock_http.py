"""Bedrock's runtime paths called over raw HTTP (`httpx2` and `httpx` POSTs) and through LiteLLM's Bedrock route,
against the fake provider on 127.0.0.1: exactly one record per call, priced as in test_bedrock."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx
import httpx2
import pytest
from botocore.eventstream import EventStreamBuffer
from test_bedrock import (
    ACCESS_KEY,
    CONVERSE_INPUT,
    FAMILIES,
    GLOBAL_SONNET,
    MESSAGES,
    PROFILE_ARN,
    REGION,
    SECRET_KEY,
    STREAMING,
    US_SONNET,
    Family,
    assert_family_cost,
    assert_family_record,
)

from llmtally.demo import fake_bedrock
from llmtally.demo.fake_bedrock import CONVERSE_USAGE
from llmtally.instrumentation.keys import key_id
from pricing_helpers import answer_cost

LIBRARIES = [httpx2, httpx]
# A Signature V4 header as AWS SDKs send it: the key id is the access key id, never the signature.
SIGNED = {
    "authorization": f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/{REGION}/bedrock/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=0123456789abcdef",
    "x-amz-date": "20260101T000000Z",
}


def url(provider, model: str, action: str) -> str:
    return f"{provider.base_url}/model/{quote(model, safe='')}/{action}"


def frames(body: bytes) -> list[tuple[str, Any]]:
    """The (event type, JSON payload) of each message of an AWS event stream."""
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return [(m.headers.get(":event-type") or m.headers[":exception-type"], json.loads(m.payload)) for m in buffer]


@pytest.mark.parametrize("library", LIBRARIES, ids=["httpx2", "httpx"])
def test_converse_and_converse_stream(telemetry, provider, library):
    with library.Client() as http:
        answer = http.post(
            url(provider, PROFILE_ARN, "converse"),
            json={"messages": MESSAGES, "inferenceConfig": {"maxTokens": 64, "topP": 0.5}},
            headers=SIGNED,
        )
        assert answer.status_code == 200
        attrs, record = telemetry.stored()
        assert attrs["gen_ai.provider.name"] == "aws.bedrock"
        assert attrs["gen_ai.request.model"] == PROFILE_ARN  # decoded from the path, slashes and all
        assert (attrs["gen_ai.request.max_tokens"], attrs["gen_ai.request.top_p"]) == (64, 0.5)
        assert attrs["gen_ai.usage.input_tokens"] == CONVERSE_INPUT
        assert attrs["llmtally.api_key"] == key_id(ACCESS_KEY)
        assert attrs["llmtally.provider.request_id"] == answer.headers["x-amzn-requestid"]
        assert record.provider_cost_nusd == answer_cost(answer.json(), PROFILE_ARN, "aws", record) > 0

        telemetry.clear()
        with http.stream("POST", url(provider, GLOBAL_SONNET, "converse-stream"), json={"messages": MESSAGES}) as s:
            assert s.headers["content-type"] == "application/vnd.amazon.eventstream"
            events = frames(s.read())
        assert [name for name, _ in events][-2:] == ["messageStop", "metadata"]
        attrs, record = telemetry.stored()
        assert attrs["gen_ai.request.stream"] is True
        assert attrs["llmtally.stream.outcome"] == "completed"
        assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
        assert attrs["gen_ai.usage.output_tokens"] == CONVERSE_USAGE["outputTokens"]
        assert record.provider_cost_nusd == answer_cost(events[-1][1], GLOBAL_SONNET, "aws", record) > 0


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_invoke(telemetry, provider, family):
    with httpx2.Client() as http:
        answer = http.post(url(provider, family.model, "invoke"), json=family.body)
    assert answer.status_code == 200
    attrs, record = telemetry.stored()
    assert_family_record(attrs, family)
    assert attrs["llmtally.usage.source"] == "provider"
    assert_family_cost(record, family, answer.json())


@pytest.mark.parametrize("family", STREAMING, ids=lambda f: f.name)
def test_invoke_with_response_stream(telemetry, provider, family):
    async def run() -> list[tuple[str, Any]]:
        async with httpx.AsyncClient() as http:
            target = url(provider, family.model, "invoke-with-response-stream")
            async with http.stream("POST", target, json=family.body) as answer:
                return frames(await answer.aread())

    events = asyncio.run(run())
    assert {name for name, _ in events} == {"chunk"}
    attrs, record = telemetry.stored()
    assert_family_record(attrs, family)
    assert attrs["llmtally.stream.outcome"] == "completed"
    assert attrs["llmtally.usage.source"] == "provider"
    assert_family_cost(record, family, {"usage": fake_bedrock.CLAUDE_USAGE} if family.flavor else None)


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (424, "ModelErrorException", "model_error"),  # the status alone would say invalid_request
        (400, "ServiceQuotaExceededException", "rate_limit"),
        (429, "ModelNotReadyException", "server_error"),
    ],
)
def test_errors_are_typed_by_the_error_type_header(telemetry, provider, monkeypatch, status, code, error_type):
    monkeypatch.setitem(fake_bedrock.ERROR_CODES, status, code)
    provider.fail_next(status)
    with httpx2.Client() as http:
        answer = http.post(url(provider, US_SONNET, "converse"), json={"messages": MESSAGES})
    assert answer.headers["x-amzn-errortype"].startswith(code + ":")
    record = telemetry.record()
    assert (record["error.type"], record["http.response.status_code"]) == (error_type, status)
    assert record["llmtally.error.message"] == answer.json()["message"]


def test_an_exception_event_over_http(telemetry, provider):
    headers = {"x-fake-stream-error": "modelStreamErrorException"}
    with httpx2.Client() as http:
        target = url(provider, STREAMING[0].model, "invoke-with-response-stream")
        with http.stream("POST", target, json=STREAMING[0].body, headers=headers) as answer:
            events = frames(answer.read())
    assert events[-1][0] == "modelStreamErrorException"
    record = telemetry.record()
    assert record["error.type"] == "model_error"
    assert record["llmtally.error.message"] == "Fake modelStreamErrorException."


def test_a_body_without_counts_takes_them_from_bedrock_headers(telemetry, provider):
    mistral = next(f for f in FAMILIES if f.name == "mistral")
    with httpx2.Client() as http:
        answer = http.post(url(provider, mistral.model, "invoke"), json=mistral.body)
    assert "outputs" in answer.json() and "usage" not in answer.json()
    assert int(answer.headers["x-amzn-bedrock-input-token-count"]) == mistral.input
    record = telemetry.record()
    assert record["gen_ai.usage.input_tokens"] == mistral.input
    assert record["gen_ai.usage.output_tokens"] == mistral.output


# --- LiteLLM's Bedrock route ------------------------------------------------------------------------------------------


def litellm_args(provider) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 64,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "aws_region_name": REGION,
        "aws_bedrock_runtime_endpoint": provider.base_url,
        "num_retries": 0,
    }


def assert_litellm_record(telemetry, model: str, stream: bool, family: Family | None = None) -> None:
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.request.model"] == model
    assert attrs["gen_ai.request.stream"] is stream
    assert attrs["llmtally.api_key"] == key_id(ACCESS_KEY)
    assert attrs["llmtally.usage.source"] == "provider"
    if family is None:
        assert attrs["gen_ai.usage.input_tokens"] == CONVERSE_INPUT
        assert record.provider_cost_nusd == answer_cost({"usage": CONVERSE_USAGE}, model, "aws", record)
    else:
        assert attrs["gen_ai.usage.input_tokens"] == family.input
        assert_family_cost(record, family, {"usage": fake_bedrock.CLAUDE_USAGE})


# LiteLLM's routes: the model each is called with, its family where it is an InvokeModel body, and the paths it
# sends a whole and a streamed request to.
LITELLM_ROUTES = {
    "converse": (US_SONNET, None, ("/converse", "/converse-stream")),
    "invoke": (FAMILIES[0].model, FAMILIES[0], ("/invoke", "/invoke-with-response-stream")),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("route", LITELLM_ROUTES)
def test_litellm_route(telemetry, provider, litellm, route, stream):
    model, family, paths = LITELLM_ROUTES[route]
    answer = litellm.completion(model=f"bedrock/{route}/{model}", stream=stream, **litellm_args(provider))
    if stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in answer)
    else:
        text = answer.choices[0].message.content
    assert text == fake_bedrock.REPLY_TEXT
    assert provider.requests[-1].path.endswith(paths[stream])
    assert_litellm_record(telemetry, model, stream, family)


def test_litellm_async(telemetry, provider, litellm):
    async def run() -> str:
        answer = await litellm.acompletion(model=f"bedrock/converse/{US_SONNET}", **litellm_args(provider))
        return answer.choices[0].message.content

    assert asyncio.run(run()) == fake_bedrock.REPLY_TEXT
    assert_litellm_record(telemetry, US_SONNET, False)
