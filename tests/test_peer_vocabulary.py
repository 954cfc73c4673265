"""Peers' telemetry in llmtally's vocabulary: their error types onto llmtally's bounded set, their stream flags,
their token conventions corrected to the GenAI semconv before pricing, and counts genai-prices refuses kept
unpriced with the reason (never a cost)."""

from __future__ import annotations

from typing import Any

import pytest
from genai_prices import Usage, calc_price
from otlp_fuzz import HOUR0_NS, traces

from llmtally.exporter.normalise import otlp
from llmtally.exporter.normalise.peers import ERROR_TYPES, error_type
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.price import UNPRICED, Pricer, PricingConfig
from llmtally.exporter.receive.prepare import prepare
from llmtally.instrumentation import errors

# Instrumentation scopes as each peer names its tracer.
OFFICIAL = "opentelemetry.instrumentation.genai.openai"
OPENLLMETRY = "opentelemetry.instrumentation.openai.v1"
OPENLLMETRY_ANTHROPIC = "opentelemetry.instrumentation.anthropic"
OPENLIT = "openlit.otel.tracing"
ANTHROPIC_SDK = "com.anthropic.sdk.python"


def test_the_receivers_error_types_are_the_instrumentations():
    assert ERROR_TYPES == errors.ERROR_TYPES


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        # one kind, as each peer writes it: official (qualified class), OpenLLMetry and OpenLIT (class), provider
        # error codes (OpenLLMetry from the error body), HTTP status (official google-genai)
        ("openai.RateLimitError", "rate_limit"),
        ("anthropic.RateLimitError", "rate_limit"),
        ("RateLimitError", "rate_limit"),
        ("rate_limit_error", "rate_limit"),
        ("rate_limit_exceeded", "rate_limit"),
        ("insufficient_quota", "rate_limit"),
        ("429", "rate_limit"),
        ("ThrottlingException", "rate_limit"),
        ("google.api_core.exceptions.ResourceExhausted", "rate_limit"),
        ("openai.APITimeoutError", "timeout"),
        ("httpx.ReadTimeout", "timeout"),
        ("504", "timeout"),
        ("openai.AuthenticationError", "auth_error"),
        ("PermissionDeniedError", "auth_error"),
        ("authentication_error", "auth_error"),
        ("invalid_api_key", "auth_error"),
        ("403", "auth_error"),
        ("openai.NotFoundError", "model_error"),
        ("not_found_error", "model_error"),
        ("model_not_found", "model_error"),
        ("ModelErrorException", "model_error"),
        ("openai.APIConnectionError", "connection_error"),
        ("httpx.ConnectError", "connection_error"),
        ("httpx.RemoteProtocolError", "connection_error"),
        ("openai.BadRequestError", "invalid_request"),
        ("invalid_request_error", "invalid_request"),
        ("context_length_exceeded", "invalid_request"),
        ("UnprocessableEntityError", "invalid_request"),
        ("request_too_large", "invalid_request"),
        ("400", "invalid_request"),
        ("anthropic.InternalServerError", "server_error"),
        ("anthropic.OverloadedError", "server_error"),
        ("overloaded_error", "server_error"),
        ("api_error", "server_error"),
        ("503", "server_error"),
        ("ModelStreamErrorException", "stream_error"),
        # llmtally's own, as they are
        *((kind, kind) for kind in sorted(errors.ERROR_TYPES)),
        # nothing to map
        ("ValueError", "_OTHER"),
        ("openai.SomethingNewError", "_OTHER"),
        ("asyncio.CancelledError", "_OTHER"),
        ("200", "_OTHER"),
        ("", "_OTHER"),
    ],
)
def test_peer_error_types_map_onto_the_bounded_set(found: str, expected: str):
    assert error_type(found) == expected


def _record(scope: str, attrs: dict[str, Any], failed: bool = False) -> Record:
    request = traces([attrs], first_id=1, scope=scope)
    if failed:
        span = request.resource_spans[0].scope_spans[0].spans[0]
        span.status.code = 2
        span.status.message = "Error code: 429"
    found = otlp.from_traces(request)
    assert found.rejected == 0, found.message
    (record,) = found.records
    return record


OPENAI_CALL = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}


def test_one_kind_of_error_from_every_peer_is_one_label():
    seen = [
        _record(OFFICIAL, {**OPENAI_CALL, "gen_ai.provider.name": "openai", "error.type": "openai.RateLimitError"}),
        _record(OPENLLMETRY, {**OPENAI_CALL, "gen_ai.system": "openai", "error.type": "RateLimitError"}),
        _record(OPENLLMETRY, {**OPENAI_CALL, "gen_ai.system": "openai", "error.type": "rate_limit_error"}),
        _record(OPENLIT, {**OPENAI_CALL, "gen_ai.provider.name": "openai", "error.type": "RateLimitError"}),
        _record("opentelemetry.instrumentation.google_genai", {**OPENAI_CALL, "error.type": "429"}),
    ]
    assert {(r.status, r.error_type) for r in seen} == {("error", "rate_limit")}


def test_the_peers_own_error_type_is_kept_in_the_message_when_nothing_says_more():
    unknown = _record(OFFICIAL, {**OPENAI_CALL, "error.type": "openai.SomethingNewError"})
    assert (unknown.error_type, unknown.error_message) == ("_OTHER", "openai.SomethingNewError")
    said = _record(OFFICIAL, {**OPENAI_CALL, "error.type": "openai.RateLimitError"}, failed=True)
    assert (said.error_type, said.error_message) == ("rate_limit", "Error code: 429")
    failed = _record(OFFICIAL, OPENAI_CALL, failed=True)  # a failed span without error.type
    assert (failed.error_type, failed.error_message) == ("_OTHER", "Error code: 429")
    ours = _record("llmtally", {**OPENAI_CALL, "error.type": "rate_limit"})
    assert (ours.error_type, ours.error_message) == ("rate_limit", None)


@pytest.mark.parametrize(
    ("scope", "key"),
    [
        ("llmtally", "gen_ai.request.stream"),
        (OFFICIAL, "gen_ai.request.stream"),
        (OPENLIT, "gen_ai.request.stream"),
        (OPENLLMETRY, "gen_ai.is_streaming"),  # opentelemetry-semantic-conventions-ai's current name
        (OPENLLMETRY, "llm.is_streaming"),  # and its older one
    ],
)
def test_every_peers_stream_flag_is_read(scope: str, key: str):
    assert _record(scope, {**OPENAI_CALL, key: True}).stream is True
    assert _record(scope, {**OPENAI_CALL, key: "true"}).stream is True
    assert _record(scope, {**OPENAI_CALL, key: False}).stream is False
    assert _record(scope, {**OPENAI_CALL, key: "false"}).stream is False  # text is not truthy: read as a flag
    assert _record(scope, OPENAI_CALL).stream is False


ANTHROPIC_CALL = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-haiku-4-5"}
# Anthropic's usage: 100 uncached input tokens, 3000 read from the cache, 400 written to it, 50 output.
OPENLIT_ANTHROPIC = {  # openlit's instrumentation/anthropic/utils.py: input_tokens as the API reports them
    **ANTHROPIC_CALL,
    "gen_ai.provider.name": "anthropic",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.cache_read.input_tokens": 3000,
    "gen_ai.usage.cache_creation.input_tokens": 400,
    "gen_ai.usage.output_tokens": 50,
}
SEMCONV_ANTHROPIC = {**OPENLIT_ANTHROPIC, "gen_ai.usage.input_tokens": 3500}  # the semconv's: cache included


def expected_nusd(model: str, provider_id: str, input_tokens: int, cached: int, written: int, output: int) -> int:
    usage = Usage(input_tokens=input_tokens, cache_read_tokens=cached, cache_write_tokens=written, output_tokens=output)
    return int(calc_price(usage, model, provider_id=provider_id).total_price * 10**9)


def priced(scope: str, attrs: dict[str, Any]) -> Record:
    found, _ = prepare("traces", traces([attrs], first_id=1, scope=scope).SerializeToString(), None, Pricer())
    assert found.rejected == 0, found.message
    (record,) = found.records
    return record


@pytest.mark.parametrize(
    ("scope", "attrs"),
    [
        (OPENLIT, OPENLIT_ANTHROPIC),  # corrected: the cache tokens added
        (OPENLIT, {**OPENLIT_ANTHROPIC, "gen_ai.provider.name": "aws.bedrock"}),  # Bedrock's inputTokens too
        (OPENLLMETRY_ANTHROPIC, SEMCONV_ANTHROPIC),  # these add them themselves
        ("opentelemetry.instrumentation.genai.anthropic", SEMCONV_ANTHROPIC),
        (ANTHROPIC_SDK, SEMCONV_ANTHROPIC),
        ("llmtally", SEMCONV_ANTHROPIC),
    ],
)
def test_anthropic_input_tokens_follow_the_semconv_whoever_wrote_them(scope: str, attrs: dict[str, Any]):
    record = priced(scope, attrs)
    assert (record.input_tokens, record.cached_tokens, record.cache_write_tokens) == (3500, 3000, 400)
    assert record.total_tokens == 3550
    if record.provider == "anthropic":
        assert record.priced
        assert record.provider_cost_nusd == expected_nusd("claude-haiku-4-5", "anthropic", 3500, 3000, 400, 50)
        # 100 x $1 + 3000 reads x $0.1 + 400 writes x $1.25 + 50 x $5, per million
        assert record.provider_cost_nusd == 100_000 + 300_000 + 500_000 + 250_000


def test_openlits_openai_input_already_holds_the_cached_tokens():
    attrs = {
        **OPENAI_CALL,
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 10,
    }
    record = priced(OPENLIT, attrs)
    assert (record.input_tokens, record.cached_tokens) == (1200, 1000)
    assert record.provider_cost_nusd == expected_nusd("gpt-4o-mini", "openai", 1200, 1000, 0, 10)


def test_openlits_gemini_output_gets_its_thoughts_back():
    """openlit's google_ai_studio instrumentation: output is `candidates_token_count`, the thoughts apart."""
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "gemini",
        "gen_ai.request.model": "gemini-2.5-flash",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 50,
        "gen_ai.usage.reasoning_tokens": 500,
    }
    record = priced(OPENLIT, attrs)
    assert (record.input_tokens, record.output_tokens, record.reasoning_tokens, record.total_tokens) == (
        1000,
        550,
        500,
        1550,
    )
    assert record.priced
    assert record.provider_cost_nusd == expected_nusd("gemini-2.5-flash", "google", 1000, 0, 0, 550)
    assert priced(OFFICIAL, {**attrs, "gen_ai.usage.output_tokens": 550}).output_tokens == 550  # the semconv's


REFUSED = {**SEMCONV_ANTHROPIC, "gen_ai.usage.input_tokens": 100}  # cache reads above the input: not the semconv


def test_counts_genai_prices_refuses_are_unpriced_with_the_reason_never_a_cost():
    with pytest.raises(ValueError):
        calc_price(Usage(input_tokens=100, cache_read_tokens=3000, cache_write_tokens=400), "claude-haiku-4-5")
    record = priced("llmtally", REFUSED)  # the same counts from a sender that does not say whose convention
    assert (record.priced, record.price_source, record.provider_cost_nusd, record.customer_cost_nusd) == (
        False,
        UNPRICED,
        None,
        None,
    )
    (event,) = record.events
    assert event["type"] == "unpriced" and event["reason"].startswith("genai-prices refused the usage: ")
    assert "a more specific token count exceeds its total" in event["reason"]
    assert event["usage"] == {
        "input_tokens": 100,
        "cache_read_tokens": 3000,
        "cache_write_tokens": 400,
        "output_tokens": 50,
    }


def test_pricing_again_says_a_refusal_once_and_forgets_it_once_priced():
    record = priced("llmtally", {**REFUSED, "llmtally.events": '[{"name": "retry", "time_unix_nano": 1}]'})
    assert [e.get("type") or e["name"] for e in record.events] == ["retry", "unpriced"]
    pricer = Pricer()
    pricer.price(record)
    assert [e.get("type") or e["name"] for e in record.events] == ["retry", "unpriced"]
    override = {"model": "claude-haiku-4-5", "input_per_mtok": 1, "output_per_mtok": 5}
    overridden = Pricer(PricingConfig.from_dict({"overrides": [override]}))
    overridden.price(record)  # an override without cache prices: the input is priced as it is
    assert record.priced and [e["name"] for e in record.events] == ["retry"]
    assert record.start_time_ns == HOUR0_NS + 1000
