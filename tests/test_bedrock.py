"""Amazon Bedrock through boto3 (the botocore hook) and through the Anthropic SDK's `AnthropicBedrock` clients,
driven over real HTTP against the fake provider's Bedrock runtime API on 127.0.0.1.

Each record goes through the receiver's conversion and pricing, and its cost is checked against genai-prices: its
own usage extractor on the answer where it has one (`aws` `default` for Converse, `anthropic` for Claude's invoke
bodies), else `calc_price` on the counts the provider reported.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
from dataclasses import dataclass
from typing import Any

import anthropic
import boto3
import botocore.client
import botocore.exceptions
import botocore.parsers
import genai_prices
import pytest
from botocore.config import Config
from test_budget_enforcement import BudgetServer, budget

import llmtally
from llmtally.demo import fake_bedrock
from llmtally.demo.fake_bedrock import (
    CLAUDE_USAGE,
    COHERE_EMBED_INPUT_TOKENS,
    COHERE_TOKENS,
    CONVERSE_USAGE,
    LLAMA_USAGE,
    MISTRAL_TOKENS,
    NOVA_USAGE,
    TITAN_EMBED_INPUT_TOKENS,
    TITAN_TEXT_USAGE,
)
from llmtally.instrumentation.keys import key_id
from pricing_helpers import answer_cost, usage_cost

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
MESSAGES = [{"role": "user", "content": [{"text": "Say hello"}]}]
CLAUDE_MESSAGES = [{"role": "user", "content": "Say hello"}]
SONNET = "anthropic.claude-sonnet-4-5-20250929-v1:0"
US_SONNET = "us." + SONNET
GLOBAL_SONNET = "global." + SONNET
PROFILE_ARN = f"arn:aws:bedrock:{REGION}:123456789012:inference-profile/{US_SONNET}"
CONVERSE_INPUT = (
    CONVERSE_USAGE["inputTokens"] + CONVERSE_USAGE["cacheReadInputTokens"] + CONVERSE_USAGE["cacheWriteInputTokens"]
)
CLAUDE_INPUT = (
    CLAUDE_USAGE["input_tokens"] + CLAUDE_USAGE["cache_read_input_tokens"] + CLAUDE_USAGE["cache_creation_input_tokens"]
)


# --- helpers shared with test_bedrock_http ------------------------------------------------------------------------


def client(provider, *, retries: int = 0, endpoint: str | None = None, service: str = "bedrock-runtime") -> Any:
    """A real boto3 client for the fake provider, with static credentials and up to `retries` retries per call."""
    return boto3.client(
        service,
        endpoint_url=endpoint or provider.base_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"mode": "standard", "max_attempts": retries}, s3={"addressing_style": "path"}),
    )


def send_header(bedrock: Any, name: str, value: str) -> None:
    """Adds a header to every request of `bedrock` (botocore's own extension point, before signing)."""

    def add(request: Any, **kwargs: Any) -> None:
        request.headers[name] = value

    bedrock.meta.events.register("before-sign.bedrock-runtime", add)


@dataclass(frozen=True)
class Family:
    """One model family's InvokeModel request and what its answers report."""

    name: str
    model: str
    body: dict[str, Any]
    input: int
    output: int
    finish: str | None
    operation: str = "chat"
    cache_read: int = 0
    cache_write: int = 0
    flavor: str | None = None  # genai-prices' extractor flavor for the answer body, where it has one
    priced: bool = True

    def usage(self) -> genai_prices.Usage:
        return genai_prices.Usage(
            input_tokens=self.input,
            output_tokens=self.output,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
        )


FAMILIES = [
    Family(
        "claude",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "temperature": 0.2, "messages": CLAUDE_MESSAGES},
        CLAUDE_INPUT,
        CLAUDE_USAGE["output_tokens"],
        "end_turn",
        cache_read=CLAUDE_USAGE["cache_read_input_tokens"],
        cache_write=CLAUDE_USAGE["cache_creation_input_tokens"],
        flavor="anthropic",
    ),
    Family(
        "llama",
        "us.meta.llama3-2-1b-instruct-v1:0",
        {"prompt": "Say hello", "max_gen_len": 64, "temperature": 0.2, "top_p": 0.9},
        LLAMA_USAGE["prompt_token_count"],
        LLAMA_USAGE["generation_token_count"],
        "stop",
    ),
    Family(
        "nova",
        "amazon.nova-lite-v1:0",
        {
            "schemaVersion": "messages-v1",
            "messages": MESSAGES,
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.2, "topP": 0.9},
        },
        NOVA_USAGE["inputTokens"] + NOVA_USAGE["cacheReadInputTokenCount"] + NOVA_USAGE["cacheWriteInputTokenCount"],
        NOVA_USAGE["outputTokens"],
        "end_turn",
        cache_read=NOVA_USAGE["cacheReadInputTokenCount"],
    ),
    Family(
        "titan-text",
        "amazon.titan-text-express-v1",
        {
            "inputText": "Say hello",
            "textGenerationConfig": {"maxTokenCount": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["U:"]},
        },
        TITAN_TEXT_USAGE["inputTextTokenCount"],
        TITAN_TEXT_USAGE["tokenCount"],
        "FINISH",
    ),
    Family(
        "titan-embed",
        "amazon.titan-embed-text-v2:0",
        {"inputText": "Say hello", "dimensions": 8},
        TITAN_EMBED_INPUT_TOKENS,
        0,
        None,
        operation="embeddings",
    ),
    Family(
        "mistral",
        "mistral.mistral-7b-instruct-v0:2",
        {"prompt": "<s>[INST] Say hello [/INST]", "max_tokens": 64, "temperature": 0.2, "top_p": 0.9},
        *MISTRAL_TOKENS,
        "stop",
    ),
    Family(
        "cohere",
        "cohere.command-r-v1:0",
        {"message": "Say hello", "max_tokens": 64, "temperature": 0.2, "p": 0.9},
        *COHERE_TOKENS,
        "COMPLETE",
        priced=False,  # genai-prices has no price for Cohere's models on Bedrock
    ),
    Family(
        "cohere-embed",
        "cohere.embed-english-v3",
        {"texts": ["Say hello"], "input_type": "search_document"},
        COHERE_EMBED_INPUT_TOKENS,
        0,
        None,
        operation="embeddings",
        priced=False,
    ),
]
STREAMING = [f for f in FAMILIES if f.operation == "chat"]


def assert_family_record(attrs: dict[str, Any], family: Family) -> None:
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.operation.name"] == family.operation
    assert attrs["gen_ai.request.model"] == family.model
    assert "gen_ai.response.model" not in attrs  # Bedrock's answers name no model id: priced by the request's
    assert attrs["gen_ai.usage.input_tokens"] == family.input
    assert attrs["gen_ai.usage.output_tokens"] == family.output
    assert attrs["llmtally.usage.total_tokens"] == family.input + family.output
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == family.cache_read
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == family.cache_write
    if family.finish:
        assert attrs["gen_ai.response.finish_reasons"] == (family.finish,)
    if family.operation == "chat":
        assert attrs["gen_ai.request.max_tokens"] == 64
        assert attrs["gen_ai.request.temperature"] == 0.2


def assert_family_cost(record: Any, family: Family, answer: Any = None) -> None:
    if not family.priced:
        assert (record.priced, record.price_source, record.provider_cost_nusd) == (False, "unpriced", None)
        return
    assert record.priced, record.price_source
    if family.flavor and answer is not None:
        cost = answer_cost(answer, family.model, "aws", record, flavor=family.flavor)
    else:
        cost = usage_cost(family.usage(), family.model, "aws", record)
    assert record.provider_cost_nusd == cost > 0


# --- Converse -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "catalog_model"),
    [
        (SONNET, "regional.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        (US_SONNET, "regional.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        (GLOBAL_SONNET, "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("eu.anthropic.claude-haiku-4-5-20251001-v1:0", "regional.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("apac.anthropic.claude-sonnet-4-20250514-v1:0", "regional.anthropic.claude-sonnet-4-20250514-v1:0"),
        (PROFILE_ARN, "regional.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ],
)
def test_converse_is_one_record_priced_for_its_model_id(telemetry, provider, model, catalog_model):
    bedrock = client(provider)
    answer = bedrock.converse(
        modelId=model,
        messages=MESSAGES,
        inferenceConfig={"maxTokens": 64, "temperature": 0.3, "topP": 0.9, "stopSequences": ["User:"]},
    )
    assert answer["output"]["message"]["content"][0]["text"] == fake_bedrock.REPLY_TEXT
    (span,) = telemetry.spans()
    assert span.name == f"chat {model}"
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.request.model"] == model
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.request.temperature"] == 0.3
    assert attrs["gen_ai.request.top_p"] == 0.9
    assert attrs["gen_ai.request.stop_sequences"] == ("User:",)
    assert attrs["gen_ai.request.stream"] is False
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["gen_ai.usage.input_tokens"] == CONVERSE_INPUT
    assert attrs["gen_ai.usage.output_tokens"] == CONVERSE_USAGE["outputTokens"]
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == CONVERSE_USAGE["cacheReadInputTokens"]
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == CONVERSE_USAGE["cacheWriteInputTokens"]
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["llmtally.provider.request_id"] == answer["ResponseMetadata"]["RequestId"]
    assert attrs["llmtally.api_key"] == key_id(ACCESS_KEY)
    assert SECRET_KEY not in json.dumps(attrs, default=str)
    assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", provider.port)
    assert "http.request.resend_count" not in attrs
    # Priced as genai-prices prices the answer, read by its own `aws` extractor, for the model id asked for.
    assert record.price_source.endswith("aws/" + catalog_model)
    assert record.provider_cost_nusd == answer_cost(answer, model, "aws", record) > 0
    assert telemetry.metric_sum("completion.requests.success", {"gen_ai.provider.name": "aws.bedrock"}) == 1


def test_cross_region_profiles_are_priced_at_their_own_rates(telemetry, provider):
    bedrock = client(provider)
    costs = {}
    for model in (US_SONNET, GLOBAL_SONNET):
        telemetry.clear()
        bedrock.converse(modelId=model, messages=MESSAGES)
        costs[model] = telemetry.stored()[1].provider_cost_nusd
    assert costs[GLOBAL_SONNET] < costs[US_SONNET]  # the regional profile costs 10% more


def test_converse_stream(telemetry, provider):
    bedrock = client(provider)
    answer = bedrock.converse_stream(modelId=US_SONNET, messages=MESSAGES, inferenceConfig={"maxTokens": 32})
    events = list(answer["stream"])
    assert [next(iter(e)) for e in events][-2:] == ["messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == fake_bedrock.REPLY_TEXT
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.request.max_tokens"] == 32
    assert attrs["llmtally.stream.outcome"] == "completed"
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["gen_ai.usage.input_tokens"] == CONVERSE_INPUT
    assert attrs["llmtally.provider.request_id"] == answer["ResponseMetadata"]["RequestId"]
    metadata = events[-1]["metadata"]
    assert record.provider_cost_nusd == answer_cost(metadata, US_SONNET, "aws", record) > 0
    assert telemetry.metric_sum("completion.time_to_first_token") == 1


def test_a_stream_closed_early_or_dropped_ends_once(telemetry, provider):
    bedrock = client(provider)
    answer = bedrock.converse_stream(modelId=US_SONNET, messages=MESSAGES)
    stream = answer["stream"]
    for _event in stream:
        break
    assert telemetry.records() == []  # still open: the app may read on
    stream.close()
    stream.close()
    record = telemetry.record()
    assert record["llmtally.stream.outcome"] == "closed_early"
    assert record["llmtally.usage.source"] == "none"  # Converse reports usage in its last event
    # Claude's invoke stream says its input usage first: closed early, the record has partial usage.
    claude = FAMILIES[0]
    answer = bedrock.invoke_model_with_response_stream(modelId=claude.model, body=json.dumps(claude.body))
    stream = answer["body"]
    next(iter(stream))
    stream.close()
    record = telemetry.records()[-1]
    assert record["llmtally.stream.outcome"] == "closed_early"
    assert record["llmtally.usage.source"] == "partial"
    assert record["gen_ai.usage.input_tokens"] == CLAUDE_INPUT
    # Dropped unread.
    answer = bedrock.converse_stream(modelId=US_SONNET, messages=MESSAGES)
    del answer
    gc.collect()
    assert len(telemetry.records()) == 3
    assert telemetry.records()[-1]["llmtally.stream.outcome"] == "abandoned"


# --- InvokeModel: each family's bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_invoke_model(telemetry, provider, family):
    bedrock = client(provider)
    answer = bedrock.invoke_model(modelId=family.model, body=json.dumps(family.body), contentType="application/json")
    body = answer["body"].read()  # the app reads the body as it would unrecorded
    data = json.loads(body)
    assert data and answer["contentType"] == "application/json"
    (span,) = telemetry.spans()
    assert span.name == f"{family.operation} {family.model}"
    attrs, record = telemetry.stored()
    assert_family_record(attrs, family)
    assert attrs["gen_ai.request.stream"] is False
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["llmtally.provider.request_id"] == answer["ResponseMetadata"]["RequestId"]
    assert_family_cost(record, family, data)


@pytest.mark.parametrize("family", STREAMING, ids=lambda f: f.name)
def test_invoke_model_with_response_stream(telemetry, provider, family):
    bedrock = client(provider)
    answer = bedrock.invoke_model_with_response_stream(modelId=family.model, body=json.dumps(family.body))
    chunks = [json.loads(event["chunk"]["bytes"]) for event in answer["body"]]
    assert "amazon-bedrock-invocationMetrics" in chunks[-1]
    attrs, record = telemetry.stored()
    assert_family_record(attrs, family)
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["llmtally.stream.outcome"] == "completed"
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0
    assert_family_cost(record, family, {"usage": CLAUDE_USAGE} if family.flavor else None)


# --- Errors and retries -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (400, "ValidationException", "invalid_request"),
        (400, "ServiceQuotaExceededException", "rate_limit"),
        (429, "ThrottlingException", "rate_limit"),
        (429, "ModelNotReadyException", "server_error"),
        (403, "AccessDeniedException", "auth_error"),
        (403, "UnrecognizedClientException", "auth_error"),
        (404, "ResourceNotFoundException", "model_error"),
        (408, "ModelTimeoutException", "timeout"),
        (424, "ModelErrorException", "model_error"),
        (500, "InternalServerException", "server_error"),
        (503, "ServiceUnavailableException", "server_error"),
    ],
)
def test_errors_are_typed_by_their_aws_code(telemetry, provider, monkeypatch, status, code, error_type):
    monkeypatch.setitem(fake_bedrock.ERROR_CODES, status, code)
    provider.fail_next(status)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client(provider).converse(modelId=US_SONNET, messages=MESSAGES)
    assert raised.value.response["Error"]["Code"] == code
    record = telemetry.record()
    assert record["error.type"] == error_type
    assert record["http.response.status_code"] == status
    assert record["llmtally.error.message"] == f"Fake {code} (HTTP {status})."
    assert record["llmtally.usage.source"] == "none"
    assert record["llmtally.provider.request_id"] == raised.value.response["ResponseMetadata"]["RequestId"]
    assert telemetry.metric_sum("completion.requests.error", {"error.type": error_type}) == 1


def test_aws_error_codes_are_read_in_each_of_their_forms():
    from llmtally.instrumentation.apis import bedrock

    for endpoint in bedrock.ENDPOINTS:
        assert endpoint.error_type("ThrottlingException:http://internal.amazon.com/coral/") == "rate_limit"
        assert endpoint.error_type("com.amazon.coral#ValidationException") == "invalid_request"
        assert endpoint.error_type("modelStreamErrorException") == "model_error"
        assert endpoint.error_type("SomethingNewException") is None  # then the HTTP status decides


def test_retries_are_one_record_with_their_events(telemetry, provider):
    bedrock = client(provider, retries=3)  # botocore's `max_attempts`: retries, so 4 attempts in all
    provider.fail_next(429)
    provider.fail_next(503)
    answer = bedrock.converse(modelId=US_SONNET, messages=MESSAGES)
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(provider.requests) == 3
    record = telemetry.record()
    assert record["http.request.resend_count"] == 2
    assert "error.type" not in record
    assert record["gen_ai.usage.input_tokens"] == CONVERSE_INPUT
    retries = json.loads(record["llmtally.events"])
    assert [(e["attempt"], e["http.response.status_code"], e["error.type"]) for e in retries] == [
        (1, 429, "rate_limit"),
        (2, 503, "server_error"),
    ]
    (span,) = telemetry.spans()
    assert [e.name for e in span.events] == ["llmtally.retry", "llmtally.retry"]
    # Every attempt failed: one error record.
    provider.fail_next(500, times=4)
    with pytest.raises(botocore.exceptions.ClientError):
        bedrock.converse(modelId=US_SONNET, messages=MESSAGES)
    assert len(provider.requests) == 7
    record = telemetry.records()[-1]
    assert (record["error.type"], record["http.request.resend_count"]) == ("server_error", 3)
    assert len(telemetry.records()) == 2


@pytest.mark.parametrize(
    ("exception", "error_type"), [("modelStreamErrorException", "model_error"), ("throttlingException", "rate_limit")]
)
def test_an_exception_event_ends_the_stream_with_its_error(telemetry, provider, exception, error_type):
    bedrock = client(provider)
    send_header(bedrock, "x-fake-stream-error", exception)
    answer = bedrock.converse_stream(modelId=US_SONNET, messages=MESSAGES)
    with pytest.raises(botocore.exceptions.EventStreamError):
        list(answer["stream"])
    record = telemetry.record()
    assert record["error.type"] == error_type
    assert record["llmtally.error.message"] == f"Fake {exception}."
    assert record["llmtally.stream.outcome"] == "failed"
    assert record["http.response.status_code"] == 200


def test_a_connection_error_is_recorded(telemetry):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    bedrock = client(None, endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        bedrock.converse(modelId=US_SONNET, messages=MESSAGES)
    record = telemetry.record()
    assert record["error.type"] == "connection_error"
    assert "http.response.status_code" not in record


def test_content_is_captured_when_asked(telemetry, provider):
    telemetry.reinstrument(capture_content=True)
    bedrock = client(provider)
    bedrock.converse(modelId=US_SONNET, messages=MESSAGES, system=[{"text": "Be brief."}])
    titan = next(f for f in FAMILIES if f.name == "titan-text")
    list(bedrock.invoke_model_with_response_stream(modelId=titan.model, body=json.dumps(titan.body))["body"])
    for record in telemetry.records():
        assert "Say hello" in record["gen_ai.input.messages"]
        assert fake_bedrock.REPLY_TEXT in record["gen_ai.output.messages"]
    assert "Be brief." in telemetry.records()[0]["gen_ai.input.messages"]
    assert len(telemetry.records()) == 2


# --- What is not recorded, budgets, uninstrument --------------------------------------------------------------------


def test_other_aws_services_are_not_recorded(telemetry, provider):
    # The fake answers them with an OpenAI-style JSON 404, which the XML services cannot even parse.
    failures = (botocore.exceptions.ClientError, botocore.parsers.ResponseParserError)
    with pytest.raises(failures):
        client(provider, service="s3").list_buckets()
    with pytest.raises(failures):
        client(provider, service="s3").get_object(Bucket="bucket", Key="model/x/invoke")
    with pytest.raises(failures):
        client(provider, service="sts").get_caller_identity()
    assert len(provider.requests) == 3
    assert telemetry.records() == []
    assert telemetry.spans(scope=None) == []


def test_a_hard_budget_refuses_the_call_before_anything_is_sent(telemetry, provider):
    state = BudgetServer().start()
    try:
        state.budgets = [
            budget("bedrock-key", spent=2.0, scope={"provider": "aws.bedrock", "api_key": key_id(ACCESS_KEY)})
        ]
        telemetry.reinstrument(budgets_url=state.url, budgets_refresh_seconds=0.1)
        bedrock = client(provider)
        with pytest.raises(llmtally.BudgetExceeded) as refused:
            bedrock.converse(modelId=US_SONNET, messages=MESSAGES)
        assert refused.value.budget == "bedrock-key"
        with pytest.raises(llmtally.BudgetExceeded):
            bedrock.invoke_model_with_response_stream(modelId=SONNET, body=json.dumps(FAMILIES[0].body))
        assert provider.requests == []
        assert telemetry.records() == []
        # Out of the budget's scope: another access key.
        other = boto3.client(
            "bedrock-runtime",
            endpoint_url=provider.base_url,
            region_name=REGION,
            aws_access_key_id="AKIAOTHERKEY00000000",
            aws_secret_access_key=SECRET_KEY,
        )
        other.converse(modelId=US_SONNET, messages=MESSAGES)
        assert telemetry.record()["llmtally.api_key"] == key_id("AKIAOTHERKEY00000000")
    finally:
        state.stop()


def test_uninstrument_puts_botocore_back(telemetry, provider):
    hooked = botocore.client.BaseClient.__dict__["_make_api_call"]
    llmtally.uninstrument()
    original = botocore.client.BaseClient.__dict__["_make_api_call"]
    assert original is not hooked and hooked.__wrapped__ is original
    client(provider).converse(modelId=US_SONNET, messages=MESSAGES)
    assert telemetry.records() == []


# --- The Anthropic SDK's Bedrock clients ------------------------------------------------------------------------------


def anthropic_bedrock(provider, cls: Any = anthropic.AnthropicBedrock) -> Any:
    return cls(
        base_url=provider.base_url,
        aws_access_key=ACCESS_KEY,
        aws_secret_key=SECRET_KEY,
        aws_region=REGION,
        max_retries=0,
    )


def assert_anthropic_bedrock_record(telemetry, model: str, stream: bool) -> None:
    # One span, ours: the SDK's own span is taken over.
    assert [s.instrumentation_scope.name for s in telemetry.spans(scope=None)] == ["llmtally"]
    attrs, record = telemetry.stored()
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.request.model"] == model
    assert attrs["gen_ai.request.stream"] is stream
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.usage.input_tokens"] == CLAUDE_INPUT
    assert attrs["gen_ai.usage.output_tokens"] == CLAUDE_USAGE["output_tokens"]
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["llmtally.usage.source"] == "provider"
    assert attrs["llmtally.api_key"] == key_id(ACCESS_KEY)
    cost = answer_cost({"usage": CLAUDE_USAGE}, model, "aws", record, flavor="anthropic")
    assert record.priced
    assert record.provider_cost_nusd == cost > 0


@pytest.mark.parametrize("model", [US_SONNET, GLOBAL_SONNET])
def test_anthropic_bedrock_create_and_stream(telemetry, provider, model):
    with anthropic_bedrock(provider) as sdk:
        message = sdk.messages.create(model=model, max_tokens=64, messages=CLAUDE_MESSAGES)
        assert message.usage.output_tokens == CLAUDE_USAGE["output_tokens"]
        assert provider.requests[-1].path.endswith("/invoke")
        assert_anthropic_bedrock_record(telemetry, model, stream=False)
        telemetry.clear()
        with sdk.messages.stream(model=model, max_tokens=64, messages=CLAUDE_MESSAGES) as stream:
            assert stream.get_final_text() == fake_bedrock.REPLY_TEXT
        assert provider.requests[-1].path.endswith("/invoke-with-response-stream")
        assert_anthropic_bedrock_record(telemetry, model, stream=True)
        assert telemetry.record()["llmtally.stream.outcome"] == "completed"


def test_async_anthropic_bedrock_create_and_stream(telemetry, provider):
    async def run() -> None:
        async with anthropic_bedrock(provider, anthropic.AsyncAnthropicBedrock) as sdk:
            await sdk.messages.create(model=US_SONNET, max_tokens=64, messages=CLAUDE_MESSAGES)
            assert_anthropic_bedrock_record(telemetry, US_SONNET, stream=False)
            telemetry.clear()
            chunks = await sdk.messages.create(model=US_SONNET, max_tokens=64, messages=CLAUDE_MESSAGES, stream=True)
            kinds = [event.type async for event in chunks]
            assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
            assert_anthropic_bedrock_record(telemetry, US_SONNET, stream=True)

    asyncio.run(run())


def test_anthropic_bedrock_error_is_typed_by_its_aws_code(telemetry, provider, monkeypatch):
    monkeypatch.setitem(fake_bedrock.ERROR_CODES, 400, "ServiceQuotaExceededException")
    provider.fail_next(400)
    with anthropic_bedrock(provider) as sdk, pytest.raises(anthropic.BadRequestError):
        sdk.messages.create(model=US_SONNET, max_tokens=64, messages=CLAUDE_MESSAGES)
    record = telemetry.record()
    assert (record["gen_ai.provider.name"], record["error.type"]) == ("aws.bedrock", "rate_limit")
