"""Hard budgets enforced in the app: the real OpenAI and Anthropic SDKs and raw httpx2, against the fake provider.

The budget state is served by a small HTTP server on 127.0.0.1 whose answer each test controls (the receiver's own
computation of spend is tested with the receiver); the last test runs a real `llmtally serve` with a budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import genai_prices
import httpx
import httpx2
import openai
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import llmtally
from instrumented_app import run_instrumented_app
from llmtally.demo.fake_provider import CHAT_USAGE, RESPONSE_MODELS
from llmtally.instrumentation import budgets
from llmtally.instrumentation.keys import key_id
from receiver import Receiver

OPENAI_KEY = "sk-test-budget-0123456789abcdefghij"
OTHER_KEY = "sk-test-other-0123456789abcdefghijk"
ANTHROPIC_KEY = "sk-ant-test-budget-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "hi"}]
CHAT_MODEL = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-5"
REFRESH = 0.1
LOG = "llmtally.instrumentation.budgets"


def budget(
    name: str,
    *,
    spent: float,
    limit: float = 1.0,
    mode: str = "hard",
    period: str = "daily",
    scope: dict[str, str] | None = None,
    start: datetime | None = None,
) -> dict[str, Any]:
    """One entry of a `/api/v1/budgets` answer, shaped as the receiver writes it."""
    start = start or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "name": name,
        "period": period,
        "mode": mode,
        "basis": "customer",
        "team": "",
        "timezone": "UTC",
        "scope": scope or {},
        "period_start": start.isoformat().replace("+00:00", "Z"),
        "period_end": (start + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "limit_usd": limit,
        "spent_usd": spent,
        "spent_nusd": int(spent * 1e9),
        "remaining_usd": max(0.0, limit - spent),
        "utilization": spent / limit,
        "percentage": spent / limit * 100,
        "projected_usd": spent,
        "days_remaining": 0.5,
        "status": "exceeded" if spent >= limit else "green",
        "exceeded": spent >= limit,
    }


class BudgetServer:
    """Serves `GET /api/v1/budgets` with what `answer()` returns; can go away and come back on the same port."""

    def __init__(self) -> None:
        self.budgets: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]] = []
        self.status = 200
        self.raw: bytes | None = None  # sent instead of the document when set
        self.seen: list[dict[str, str]] = []  # the headers of each request
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self) -> tuple[int, bytes]:
        if self.raw is not None:
            return self.status, self.raw
        found = self.budgets() if callable(self.budgets) else self.budgets
        doc = {"as_of": datetime.now(UTC).isoformat(), "budgets": found, "credits": []}
        return self.status, json.dumps(doc).encode()

    def start(self) -> BudgetServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.seen.append({k.lower(): v for k, v in self.headers.items()})
                status, body = owner.answer() if self.path == "/api/v1/budgets" else (404, b"{}")
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def state() -> Iterator[BudgetServer]:
    server = BudgetServer().start()
    yield server
    server.stop()


@pytest.fixture
def enforce(telemetry, state) -> Callable[..., budgets.Enforcer]:
    """Re-instruments the test's pipelines with enforcement against `state` (keyword arguments win)."""

    def start(**kwargs: Any) -> budgets.Enforcer:
        telemetry.reinstrument(**({"budgets_url": state.url, "budgets_refresh_seconds": REFRESH} | kwargs))
        enforcer = budgets.active()
        assert enforcer is not None
        return enforcer

    return start


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s")
        time.sleep(0.02)


def openai_client(provider, key: str = OPENAI_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=provider.openai_base_url, api_key=key, max_retries=0)


def chat(provider, key: str = OPENAI_KEY, **kwargs: Any) -> Any:
    with openai_client(provider, key) as c:
        return c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, **kwargs)


def claude(provider) -> Any:
    with anthropic.Anthropic(base_url=provider.base_url, api_key=ANTHROPIC_KEY, max_retries=0) as c:
        return c.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES)


def passes(call: Callable[[], Any]) -> bool:
    try:
        call()
    except llmtally.BudgetError:
        return False
    return True


def spent_by_requests(fake, name: str, per_request: float, limit: float, scope: dict[str, str]) -> Callable[[], list]:
    """A budget whose spend is `per_request` for every request the fake provider has seen."""
    return lambda: [budget(name, spent=len(fake.requests) * per_request, limit=limit, scope=scope)]


def assert_refused(telemetry, provider, call: Callable[[], Any], error: type[llmtally.BudgetError]) -> Any:
    """`call` raises `error`, sends nothing, and records nothing."""
    sent, records, spans = len(provider.requests), len(telemetry.records()), len(telemetry.spans(scope=None))
    with pytest.raises(error) as refused:
        call()
    assert len(provider.requests) == sent
    assert len(telemetry.records()) == records
    assert len(telemetry.spans(scope=None)) == spans
    return refused.value


# --- refusals --------------------------------------------------------------------------------------------------


def test_openai_calls_pass_until_the_hard_budget_is_spent(telemetry, provider, state, enforce, caplog):
    state.budgets = spent_by_requests(
        provider, "parsing-openai", 0.01, 0.025, {"provider": "openai", "feature": "parsing"}
    )
    enforcer = enforce()
    passed = 0
    with llmtally.attributes(feature="parsing"):
        while passes(lambda: chat(provider)):
            passed += 1
            assert passed < 10
            enforcer.refresh()
        assert passed == 3 and len(provider.requests) == 3
        error = assert_refused(telemetry, provider, lambda: chat(provider), llmtally.BudgetExceeded)
    assert isinstance(error, llmtally.BudgetError)
    assert (error.budget, error.period, error.limit_usd) == ("parsing-openai", "daily", 0.025)
    assert error.spent_usd == pytest.approx(0.03)
    message = str(error)
    for part in ("parsing-openai", "daily", "0.0250", "0.0300"):
        assert part in message, message
    assert len(telemetry.records()) == 3
    # Counted once per refusal, by budget, and logged once per refusal.
    assert telemetry.metric_sum("completion.budget.refusals", {"budget": "parsing-openai"}) == 2
    refusals = [r for r in caplog.records if r.name == LOG and "refused" in r.getMessage()]
    assert len(refusals) == 2 and all(r.levelno == logging.WARNING for r in refusals)
    # Out of the budget's scope: another feature, no feature, another provider.
    with llmtally.attributes(feature="other"):
        chat(provider)
    chat(provider)
    with llmtally.attributes(feature="parsing"):
        claude(provider)
    assert len(provider.requests) == 6
    assert telemetry.records()[-1]["llmtally.feature"] == "parsing"


def test_async_openai_and_anthropic_calls_are_refused_before_sending(telemetry, provider, state, enforce):
    state.budgets = [
        budget("openai-all", spent=2.0, scope={"provider": "openai"}),
        budget("claude", spent=1.0, scope={"provider": "anthropic", "model": CLAUDE}),
    ]
    enforce()

    async def openai_chat() -> Any:
        async with openai.AsyncOpenAI(base_url=provider.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as c:
            return await c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)

    async def openai_stream() -> Any:
        async with openai.AsyncOpenAI(base_url=provider.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as c:
            return [
                chunk
                async for chunk in await c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True)
            ]

    async def claude_message(model: str) -> Any:
        async with anthropic.AsyncAnthropic(base_url=provider.base_url, api_key=ANTHROPIC_KEY, max_retries=0) as c:
            return await c.messages.create(model=model, max_tokens=64, messages=MESSAGES)

    openai_error = assert_refused(telemetry, provider, lambda: asyncio.run(openai_chat()), llmtally.BudgetExceeded)
    assert openai_error.budget == "openai-all"
    assert assert_refused(telemetry, provider, lambda: asyncio.run(openai_stream()), llmtally.BudgetExceeded)
    assert assert_refused(telemetry, provider, lambda: claude(provider), llmtally.BudgetExceeded).budget == "claude"
    error = assert_refused(telemetry, provider, lambda: asyncio.run(claude_message(CLAUDE)), llmtally.BudgetExceeded)
    assert error.budget == "claude"
    assert provider.requests == []
    # Another Claude model is out of the "claude" budget's scope.
    asyncio.run(claude_message("claude-haiku-4-5"))
    assert len(provider.requests) == 1
    assert telemetry.record()["gen_ai.request.model"] == "claude-haiku-4-5"
    assert telemetry.metric_sum("completion.budget.refusals", {"budget": "openai-all"}) == 2
    assert telemetry.metric_sum("completion.budget.refusals", {"budget": "claude"}) == 2


def test_a_hard_budget_on_a_custom_dimension_refuses_only_its_value(telemetry, provider, state, enforce):
    state.budgets = [budget("platform", spent=5.0, scope={"team": "platform", "provider": "openai"})]
    enforce()
    with llmtally.attributes(team="platform"):
        assert assert_refused(telemetry, provider, lambda: chat(provider), llmtally.BudgetExceeded).budget == "platform"
    with llmtally.attributes(team="search"):
        chat(provider)
    assert telemetry.records()[-1]["llmtally.dim.team"] == "search"
    chat(provider)  # no team


def test_user_key_and_environment_scopes_match_what_the_record_says(telemetry, provider, state, enforce):
    state.budgets = [
        budget("bob", spent=5.0, scope={"user": "bob"}),
        budget("key", spent=5.0, scope={"api_key": key_id(OPENAI_KEY)}),
        budget("team-a", spent=5.0, scope={"api_key": "team-a", "environment": "prod"}),
    ]
    enforce(environment="staging")
    # The SDK's own user field, and attribution's user.
    assert assert_refused(telemetry, provider, lambda: chat(provider, OTHER_KEY, user="bob"), llmtally.BudgetExceeded)
    with llmtally.attributes(user="bob"):
        assert assert_refused(telemetry, provider, lambda: chat(provider, OTHER_KEY), llmtally.BudgetExceeded)
    with llmtally.attributes(user="carol"):  # attribution wins over the SDK field, as in the record
        chat(provider, OTHER_KEY, user="bob")
    assert telemetry.records()[-1]["user.id"] == "carol"
    # The key on the client instance, named by its sha256 id.
    assert assert_refused(telemetry, provider, lambda: chat(provider), llmtally.BudgetExceeded).budget == "key"
    chat(provider, OTHER_KEY)
    assert telemetry.records()[-1]["llmtally.api_key"] == key_id(OTHER_KEY) != key_id(OPENAI_KEY)
    with llmtally.attributes(api_key="team-a"):  # an alias; the settings' environment is staging
        chat(provider, OTHER_KEY)
        assert telemetry.records()[-1]["deployment.environment.name"] == "staging"
        with llmtally.attributes(environment="prod"):
            error = assert_refused(telemetry, provider, lambda: chat(provider, OTHER_KEY), llmtally.BudgetExceeded)
    assert error.budget == "team-a"
    assert len(provider.requests) == 3


@pytest.mark.parametrize("library", [httpx2, httpx], ids=["httpx2", "httpx"])
def test_raw_http_calls_are_refused_by_the_http_hook(telemetry, provider, state, enforce, library):
    state.budgets = [budget("compat-bob", spent=1.0, scope={"provider": "openai_compatible", "user": "bob"})]
    enforce()
    url = f"{provider.openai_base_url}/chat/completions"
    body = {"model": "llama-3.3-70b", "messages": MESSAGES, "user": "bob"}

    async def async_post() -> Any:
        async with library.AsyncClient() as http:
            return await http.post(url, json=body)

    with library.Client() as http:
        error = assert_refused(telemetry, provider, lambda: http.post(url, json=body), llmtally.BudgetExceeded)
        assert error.budget == "compat-bob"
        assert_refused(telemetry, provider, lambda: asyncio.run(async_post()), llmtally.BudgetExceeded)
        assert http.post(url, json={**body, "user": "alice"}).status_code == 200
    assert len(provider.requests) == 1
    assert telemetry.record()["user.id"] == "alice"


def test_a_soft_budget_never_refuses(telemetry, provider, state, enforce):
    state.budgets = [budget("soft", spent=9.0, mode="soft"), budget("hard-elsewhere", spent=9.0, scope={"user": "x"})]
    enforce()
    chat(provider)
    claude(provider)
    assert len(telemetry.records()) == 2
    assert telemetry.metric_sum("completion.budget.refusals") == 0


# --- refresh, periods, outages ---------------------------------------------------------------------------------


def test_a_new_period_lets_calls_through_again(telemetry, provider, state, enforce):
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    state.budgets = [budget("daily", spent=1.5, start=yesterday)]
    enforce()
    assert_refused(telemetry, provider, lambda: chat(provider), llmtally.BudgetExceeded)
    # The receiver's answer moves to the new period; the background refresh picks it up.
    state.budgets = [budget("daily", spent=0.0)]
    wait_until(lambda: passes(lambda: chat(provider)))
    assert len(provider.requests) == 1
    chat(provider)
    assert len(telemetry.records()) == 2


def test_fail_open_lets_calls_through_while_the_receiver_is_away(telemetry, provider, state, enforce, caplog):
    state.budgets = [budget("hard", spent=2.0, scope={"feature": "capped"})]
    enforce()
    gauge = lambda: telemetry.metric_sum("completion.budget.state_ok")  # noqa: E731
    capped = lambda: chat(provider)  # noqa: E731
    assert gauge() == 1
    with llmtally.attributes(feature="capped"):
        assert_refused(telemetry, provider, capped, llmtally.BudgetExceeded)
        state.stop()
        wait_until(lambda: gauge() == 0)
        # Once the cached state is stale (three refresh intervals), calls go through.
        wait_until(lambda: passes(capped))
        time.sleep(5 * REFRESH)  # more failed refreshes: still one warning for the outage
        capped()
        outage = [r for r in caplog.records if r.name == LOG and "cannot read budget state" in r.getMessage()]
        assert len(outage) == 1 and outage[0].levelno == logging.WARNING
        state.start()  # the receiver is back, on the same port
        wait_until(lambda: gauge() == 1)
        assert_refused(telemetry, provider, capped, llmtally.BudgetExceeded)
    back = [r for r in caplog.records if r.name == LOG and "readable again" in r.getMessage()]
    assert len(back) == 1
    assert len(provider.requests) == len(telemetry.records()) >= 2


def test_fail_closed_refuses_every_call_while_the_state_is_unknown(telemetry, provider, state, enforce):
    enforce(budgets_fail="closed")
    chat(provider)
    state.stop()
    error = None
    deadline = time.monotonic() + 5
    while error is None and time.monotonic() < deadline:
        try:
            chat(provider)
        except llmtally.BudgetStateUnavailable as e:
            error = e
    assert isinstance(error, llmtally.BudgetError) and not isinstance(error, llmtally.BudgetExceeded)
    assert "closed" in str(error) and state.url in str(error)
    assert_refused(telemetry, provider, lambda: claude(provider), llmtally.BudgetStateUnavailable)
    assert telemetry.metric_sum("completion.budget.refusals", {"reason": "state_unavailable"}) >= 2
    assert telemetry.metric_sum("completion.budget.state_ok") == 0
    state.start()
    wait_until(lambda: passes(lambda: claude(provider)))
    assert telemetry.metric_sum("completion.budget.state_ok") == 1
    assert len(provider.requests) == len(telemetry.records())


def test_an_unreachable_receiver_at_start(telemetry, provider, state, enforce):
    state.stop()  # nothing listens on its port now
    began = time.monotonic()
    enforce(budgets_fail="closed")
    assert time.monotonic() - began < 3
    assert_refused(telemetry, provider, lambda: chat(provider), llmtally.BudgetStateUnavailable)
    enforce(budgets_fail="open")
    chat(provider)
    assert telemetry.metric_sum("completion.budget.state_ok") == 0


@pytest.mark.parametrize("status, raw", [(500, b'{"error": "down"}'), (200, b"not json"), (200, b'{"as_of": 1}')])
def test_an_error_answer_counts_as_an_outage(telemetry, provider, state, enforce, status, raw):
    state.budgets = [budget("all", spent=3.0)]
    state.status, state.raw = status, raw
    enforce()
    chat(provider)  # fail open: nothing known, the call goes through
    assert telemetry.metric_sum("completion.budget.state_ok") == 0
    state.status, state.raw = 200, None
    wait_until(lambda: telemetry.metric_sum("completion.budget.state_ok") == 1)
    assert_refused(telemetry, provider, lambda: chat(provider), llmtally.BudgetExceeded)


def test_environment_variables_token_and_uninstrument(telemetry, provider, state, monkeypatch):
    monkeypatch.setenv("LLMTALLY_BUDGETS_URL", state.url + "/")
    monkeypatch.setenv("LLMTALLY_API_TOKEN", "app-token-0123456789")
    monkeypatch.setenv("LLMTALLY_BUDGETS_REFRESH_SECONDS", str(REFRESH))
    monkeypatch.setenv("LLMTALLY_BUDGETS_FAIL", "closed")
    state.budgets = [budget("all", spent=3.0)]
    telemetry.reinstrument()
    enforcer = budgets.active()
    assert enforcer is not None and enforcer.fail_closed and enforcer.config.refresh_seconds == REFRESH
    assert_refused(telemetry, provider, lambda: chat(provider), llmtally.BudgetExceeded)
    wait_until(lambda: len(state.seen) >= 3)  # the first fetch, then the background thread
    assert {h.get("authorization") for h in state.seen} == {"Bearer app-token-0123456789"}
    assert [t for t in threading.enumerate() if t.name == "llmtally-budgets"]
    llmtally.uninstrument()
    assert budgets.active() is None
    assert not [t for t in threading.enumerate() if t.name == "llmtally-budgets"]
    seen = len(state.seen)
    time.sleep(3 * REFRESH)
    assert len(state.seen) == seen
    monkeypatch.delenv("LLMTALLY_BUDGETS_URL")
    llmtally.instrument(meter_provider=telemetry.meter_provider, logger_provider=telemetry.logger_provider)
    assert budgets.active() is None  # enforcement off without a URL
    chat(provider)
    assert len(provider.requests) == 1


def test_opentelemetry_instrument_enforces_from_the_environment_alone(provider, state, tmp_path):
    """The example app, unmodified under `opentelemetry-instrument`: its Ollama call (raw httpx2) is over budget."""
    state.budgets = [budget("ollama-bob", spent=1.0, scope={"provider": "ollama", "user": "bob"})]
    with pytest.raises(AssertionError) as failed:
        run_instrumented_app(
            provider.base_url,
            tmp_path,
            LLMTALLY_BUDGETS_URL=state.url,
            LLMTALLY_API_TOKEN="app-token-0123456789",
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
    assert "llmtally.instrumentation.budgets.BudgetExceeded: llmtally budget 'ollama-bob'" in str(failed.value)
    paths = [r.path for r in provider.requests]
    assert len(paths) == 6 and not [p for p in paths if p.startswith("/api/")], paths
    assert state.seen and {h.get("authorization") for h in state.seen} == {"Bearer app-token-0123456789"}


def test_budget_state_is_parsed_into_an_index_of_hard_exceeded_budgets():
    doc = {
        "budgets": [
            budget("a", spent=1.0, scope={"provider": "openai", "feature": "x"}),
            budget("b", spent=0.5, scope={"provider": "openai", "feature": "y"}),
            budget("c", spent=2.0, scope={"feature": "z", "provider": "openai"}),
            budget("d", spent=2.0, mode="soft"),
            budget("e", spent=2.0),
        ]
    }
    index = dict(budgets.parse(json.dumps(doc).encode()))
    assert set(index) == {("feature", "provider"), ()}
    assert {v: b.name for v, b in index[("feature", "provider")].items()} == {
        ("x", "openai"): "a",
        ("z", "openai"): "c",
    }
    assert [b.name for b in index[()].values()] == ["e"]
    for bad in (b"[]", b'{"budgets": {}}', b'{"budgets": [1]}', b"{"):
        with pytest.raises(ValueError):
            budgets.parse(bad)


# --- end to end: a real `llmtally serve` -----------------------------------------------------------------------


def chat_cost_usd() -> float:
    """What the receiver charges for one fake-provider chat completion (genai-prices, no markup)."""
    usage = genai_prices.Usage(
        input_tokens=CHAT_USAGE["prompt_tokens"],
        cache_read_tokens=CHAT_USAGE["prompt_tokens_details"]["cached_tokens"],
        output_tokens=CHAT_USAGE["completion_tokens"],
    )
    model = RESPONSE_MODELS.get(CHAT_MODEL, CHAT_MODEL)
    price = genai_prices.calc_price(usage, model, provider_id="openai", genai_request_timestamp=datetime.now(UTC))
    return float(price.total_price.quantize(Decimal("1e-12")))


def test_a_real_receiver_refuses_once_the_stored_spend_reaches_the_budget(provider, tmp_path):
    token = "app-token-e2e-0123456789"
    cost = chat_cost_usd()
    assert cost > 0
    receiver = Receiver(
        tmp_path,
        f"sqlite:///{tmp_path}/audit.db",
        budgets=[
            {
                "name": "e2e-openai",
                "period": "monthly",
                "amount_usd": cost * 2.5,
                "mode": "hard",
                "scope": {"provider": "openai", "feature": "budgeted"},
            }
        ],
        api={"tokens": [{"name": "app", "role": "app", "token": token}]},
    ).start()
    spans, logs = TracerProvider(), LoggerProvider()
    spans.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True)))
    logs.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=receiver.grpc_endpoint, insecure=True))
    )
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    headers = {"authorization": f"Bearer {token}"}

    def spent() -> float:
        answer = httpx.get(f"{receiver.http_url}/api/v1/budgets", headers=headers, timeout=5)
        assert answer.status_code == 200, answer.text
        (state,) = answer.json()["budgets"]
        assert state["name"] == "e2e-openai"
        return float(state["spent_usd"])

    try:
        assert httpx.get(f"{receiver.http_url}/api/v1/requests", headers=headers, timeout=5).status_code == 403
        llmtally.uninstrument()
        llmtally.instrument(
            tracer_provider=spans,
            meter_provider=meters,
            logger_provider=logs,
            budgets_url=receiver.http_url,
            api_token=token,
            budgets_refresh_seconds=0.2,
        )
        enforcer = budgets.active()
        assert enforcer is not None and enforcer.state_ok
        passed = 0
        with llmtally.attributes(feature="budgeted"):
            while passes(lambda: chat(provider)):
                passed += 1
                assert passed < 6
                # Stored and counted by the receiver, then read back by the app's refresh thread.
                expected, seen = passed * cost * 0.999, time.monotonic()
                wait_until(lambda: spent() >= expected, timeout=15)  # noqa: B023
                seen = time.monotonic()
                wait_until(lambda: (enforcer.ok_at or 0) > seen, timeout=5)  # noqa: B023
            assert passed == 3 and len(provider.requests) == 3
            assert spent() >= cost * 2.5
            with pytest.raises(llmtally.BudgetExceeded) as refused:
                chat(provider)
        assert len(provider.requests) == 3
        assert refused.value.budget == "e2e-openai" and refused.value.period == "monthly"
        assert refused.value.limit_usd == pytest.approx(cost * 2.5)
        chat(provider)  # out of scope: no feature
        assert len(provider.requests) == 4
    finally:
        llmtally.uninstrument()
        spans.shutdown()
        logs.shutdown()
        meters.shutdown()
        assert receiver.stop() == 0
