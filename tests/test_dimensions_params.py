"""Request parameters and custom dimensions, end to end: an app makes real OpenAI SDK calls against the fake provider
inside `llmtally.attributes(team=..., billing_mode=...)` with sampling parameters, exports over OTLP/gRPC to a running
`llmtally serve` (SQLite and PostgreSQL) that declares `team` and `billing_mode` (a metric label capped at two
values); then the API, the commands and /metrics are read."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
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
from prometheus_client.parser import text_string_to_metric_families

import llmtally
from conftest import fresh_store
from llmtally.cli import main
from llmtally.demo.fake_provider import FakeProvider
from receiver import Receiver, metric_sum

MESSAGES: Any = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
DIMENSIONS = ["team", {"key": "billing_mode", "label": True, "max_values": 2}]
BUDGETS = [{"name": "platform-monthly", "period": "monthly", "amount_usd": 100, "scope": {"team": "platform"}}]
# (who: llmtally.attributes, asked: chat.completions.create's parameters); `project` is not declared.
CALLS: list[tuple[dict[str, str], dict[str, Any]]] = [
    (
        {"user": "alice", "team": "platform", "billing_mode": "prepaid", "project": "apollo"},
        {
            "temperature": 0.2,
            "max_tokens": 64,
            "seed": 7,
            "stop": ["END"],
            "reasoning_effort": "low",
            "response_format": {"type": "json_object"},
            "tools": [TOOL, TOOL],
        },
    ),
    ({"user": "bob", "team": "platform", "billing_mode": "postpaid"}, {"temperature": 0.2}),
    ({"user": "bob", "team": "search", "billing_mode": "trial"}, {"temperature": 0.7, "top_p": 0.9}),
    ({"user": "carol", "team": "search", "billing_mode": "enterprise"}, {"max_completion_tokens": 32}),
    ({"user": "dave"}, {}),
]
ALICE_PARAMS = {
    "temperature": 0.2,
    "max_tokens": 64,
    "seed": 7,
    "stop_sequences": ["END"],
    "reasoning_effort": "low",
    "response_format": "json_object",
    "tool_count": 2,
}


@dataclass
class Served:
    url: str
    store: str
    config: Path
    metrics: str

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=30)

    def json(self, path: str, **params: Any) -> Any:
        answer = self.get(path, **params)
        assert answer.status_code == 200, (path, params, answer.text)
        return answer.json()


def _traffic(receiver: Receiver, fake: FakeProvider) -> None:
    """The calls, made by the app through the real OpenAI SDK with llmtally instrumented, exported to `receiver`."""
    spans, logs = TracerProvider(), LoggerProvider()
    spans.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True)))
    logs.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=receiver.grpc_endpoint, insecure=True))
    )
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    llmtally.uninstrument()
    llmtally.instrument(tracer_provider=spans, meter_provider=meters, logger_provider=logs)
    try:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-dimensions-0123456789", max_retries=0)
        for who, asked in CALLS:
            with llmtally.attributes(**who):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **asked)
    finally:
        llmtally.uninstrument()
        spans.shutdown()
        logs.shutdown()
        meters.shutdown()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, provider_server: FakeProvider
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp(f"dimensions-{request.param}")
    url, drop = fresh_store(request, workdir)
    receiver = Receiver(workdir, url, dimensions=DIMENSIONS, budgets=BUDGETS).start()
    try:
        provider_server.reset()
        _traffic(receiver, provider_server)
        deadline = time.monotonic() + 20
        while len(httpx.get(f"{receiver.http_url}/api/v1/requests", timeout=10).json()["requests"]) < len(CALLS):
            assert time.monotonic() < deadline, "the records were not stored"
            time.sleep(0.1)
        (config,) = workdir.glob("llmtally-*.yaml")
        yield Served(receiver.http_url, url, config, receiver.metrics())
    finally:
        assert receiver.stop() == 0
        drop()


def _records(served: Served) -> list[dict[str, Any]]:
    """Every stored request, as the JSON export gives it."""
    answer = served.get("/api/v1/export", format="json")
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def _ids(page: dict[str, Any]) -> set[str]:
    return {r["user"] for r in page["requests"]}


# --- request parameters ------------------------------------------------------------------------------------------


def test_request_parameters_in_the_details(served: Served):
    (alice,) = served.json("/api/v1/requests", user="alice")["requests"]
    detail = served.json(f"/api/v1/requests/{alice['id']}")
    assert detail["params"] == ALICE_PARAMS
    (carol,) = served.json("/api/v1/requests", user="carol")["requests"]
    assert served.json(f"/api/v1/requests/{carol['id']}")["params"] == {"max_tokens": 32}
    (dave,) = served.json("/api/v1/requests", user="dave")["requests"]
    assert served.json(f"/api/v1/requests/{dave['id']}")["params"] == {}


def test_request_parameters_filter_the_log_and_the_export(served: Served):
    assert _ids(served.json("/api/v1/requests", **{"param.temperature": "0.2"})) == {"alice", "bob"}
    assert len(served.json("/api/v1/requests", **{"param.temperature": "0.20"})["requests"]) == 2
    assert len(served.json("/api/v1/requests", **{"param.temperature": "0.2,0.7"})["requests"]) == 3
    assert _ids(served.json("/api/v1/requests", **{"param.max_tokens": "32"})) == {"carol"}
    assert _ids(served.json("/api/v1/requests", **{"param.reasoning_effort": "low", "param.tool_count": "2"})) == {
        "alice"
    }
    page = served.json("/api/v1/requests", user="bob", **{"param.top_p": "0.9"})
    assert len(page["requests"]) == 1 and page["filters"] == {"user": "bob", "param.top_p": 0.9}
    exported = served.get("/api/v1/export", format="csv", **{"param.temperature": "0.7"}).text
    (row,) = list(csv.DictReader(io.StringIO(exported)))
    assert json.loads(row["params"]) == {"temperature": 0.7, "top_p": 0.9}
    usage = served.json("/api/v1/usage", range="24h", **{"param.temperature": "0.2"})
    assert usage["totals"]["requests"] == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"param.temperature": "hot"}, "param.temperature must be a number, not 'hot'"),
        ({"param.max_tokens": "1.5"}, "param.max_tokens must be a whole number"),
        ({"param.bogus": "1"}, "unknown query parameter(s) param.bogus;"),
        ({"param.stop_sequences": "END"}, "unknown query parameter(s) param.stop_sequences;"),
    ],
)
def test_request_parameter_filters_refuse_what_they_cannot_use(served: Served, query: dict[str, str], message: str):
    for path in ("/api/v1/requests", "/api/v1/export", "/api/v1/usage"):
        answer = served.get(path, **query)
        assert answer.status_code == 400 and message in answer.json()["error"], (path, answer.text)


# --- custom dimensions -------------------------------------------------------------------------------------------


def test_declared_dimensions_are_stored_and_undeclared_ones_dropped_and_counted(served: Served):
    (alice,) = served.json("/api/v1/requests", user="alice")["requests"]
    detail = served.json(f"/api/v1/requests/{alice['id']}")
    assert detail["dimensions"] == {"team": "platform", "billing_mode": "prepaid"}
    # alice's project, on her call's span and on its audit event
    assert metric_sum(served.metrics, "llmtally_receiver_dimensions_dropped_total") == 2


def test_usage_grouped_and_filtered_by_a_dimension_is_exact(served: Served):
    records = _records(served)
    by_team: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_team.setdefault(r["team"] or "", []).append(r)
    report = served.json("/api/v1/usage", range="24h", group_by="team")
    rows = {row["team"]: row for row in report["rows"]}
    assert set(rows) == {"", "platform", "search"} == set(by_team)
    for team, found in by_team.items():
        assert rows[team]["requests"] == len(found)
        assert rows[team]["customer_cost_nusd"] == sum(r["customer_cost_nusd"] for r in found) > 0
        assert rows[team]["input_tokens"] == sum(r["input_tokens"] for r in found)
    assert report["totals"]["customer_cost_nusd"] == sum(r["customer_cost_nusd"] for r in records)
    platform = served.json("/api/v1/usage", range="24h", team="platform")
    assert platform["totals"]["requests"] == 2 and platform["filters"] == {"team": "platform"}
    assert platform["totals"]["customer_cost_nusd"] == rows["platform"]["customer_cost_nusd"]
    both = served.json("/api/v1/usage", range="24h", team="platform,search", group_by="billing_mode,user")
    assert sum(row["requests"] for row in both["rows"]) == 4
    assert {(row["billing_mode"], row["user"]) for row in both["rows"]} == {
        ("prepaid", "alice"),
        ("postpaid", "bob"),
        ("trial", "bob"),
        ("enterprise", "carol"),
    }
    assert _ids(served.json("/api/v1/requests", team="search", user="bob")) == {"bob"}
    assert served.json("/api/v1/errors", range="24h", team="search")["total_requests"] == 2


def test_a_statement_of_real_traffic_by_a_dimension_equals_usage(served: Served, capsys):
    """Instrumented calls tagged with a team: the statement by team (API and command) has usage's figures to the
    nano-dollar, per team and in total, and names the genai-prices entries that priced them."""
    records = _records(served)
    start = min(r["timestamp"] for r in records)
    usage = served.json("/api/v1/usage", start=start, group_by="team")
    statement = served.json("/api/v1/report", start=start, group_by="team")
    by_team = {row["team"] or "": row for row in usage["rows"]}
    assert {row["team"] or "": row["customer_cost_nusd"] for row in statement["rows"]} == {
        team: row["customer_cost_nusd"] for team, row in by_team.items()
    }
    assert {row["team"] or "": row["requests"] for row in statement["rows"]} == {
        team: row["requests"] for team, row in by_team.items()
    }
    assert statement["totals"]["customer_cost_nusd"] == usage["totals"]["customer_cost_nusd"] > 0
    assert any(source.startswith("genai-prices") for source in statement["totals"]["price_sources"])
    code = main(["report", "--config", str(served.config), "--start", start, "--by", "team", "--json"])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["totals"]["customer_cost_nusd"] == usage["totals"]["customer_cost_nusd"]


def test_unknown_dimensions_are_a_clear_400(served: Served):
    answer = served.get("/api/v1/usage", group_by="project")
    assert answer.status_code == 400
    assert "group_by: unknown name(s) project; known:" in answer.json()["error"]
    assert answer.json()["error"].endswith("team, billing_mode")


def test_export_has_a_column_per_dimension(served: Served):
    rows = list(csv.DictReader(io.StringIO(served.get("/api/v1/export", format="csv", team="search").text)))
    assert sorted((r["user"], r["team"], r["billing_mode"]) for r in rows) == [
        ("bob", "search", "trial"),
        ("carol", "search", "enterprise"),
    ]
    assert "project" not in rows[0] and "dimensions" not in rows[0]


def test_a_budget_scoped_on_a_dimension(served: Served):
    records = _records(served)
    (state,) = served.json("/api/v1/budgets")["budgets"]
    assert state["name"] == "platform-monthly" and state["scope"] == {"team": "platform"}
    assert state["spent_nusd"] == sum(r["customer_cost_nusd"] for r in records if r["team"] == "platform") > 0


def test_a_dimension_label_is_capped_with_other(served: Served):
    metrics = served.metrics
    requests = "completion_requests_total"
    assert metric_sum(metrics, requests, billing_mode="prepaid") == 1
    assert metric_sum(metrics, requests, billing_mode="postpaid") == 1
    assert metric_sum(metrics, requests, billing_mode="other") == 2  # trial and enterprise: past max_values 2
    assert metric_sum(metrics, requests, billing_mode="") == 1
    assert metric_sum(metrics, requests) == len(CALLS)
    assert metric_sum(metrics, "llmtally_receiver_dimension_label_overflow_total", dimension="billing_mode") == 2
    (family,) = [f for f in text_string_to_metric_families(metrics) if f.name == "completion_requests"]
    assert all("billing_mode" in s.labels and "team" not in s.labels for s in family.samples)  # team: not a label


def test_commands_group_filter_and_export_by_dimension_and_parameter(served: Served, capsys, tmp_path: Path):
    base = ["--config", str(served.config), "--store", served.store]

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, *base])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run("usage", "--by", "team", "--range", "24h", "--json")
    assert code == 0
    api = served.json("/api/v1/usage", range="24h", group_by="team")
    assert json.loads(out)["rows"] == api["rows"]
    code, out, _ = run("usage", "--dim", "team=search", "--range", "24h", "--json")
    assert code == 0 and json.loads(out)["totals"]["requests"] == 2
    code, out, _ = run("requests", "--param", "temperature=0.2", "--json")
    assert code == 0 and {r["user"] for r in json.loads(out)["requests"]} == {"alice", "bob"}
    (alice,) = served.json("/api/v1/requests", user="alice")["requests"]
    code, out, _ = run("requests", alice["id"], "--json")
    assert code == 0 and json.loads(out)["params"] == ALICE_PARAMS
    target = tmp_path / "search.csv"
    code, _, _ = run("export", "--dim", "team=search", "--param", "max_tokens=32", "--output", str(target))
    (row,) = list(csv.DictReader(target.open(encoding="utf-8")))
    assert code == 0 and (row["user"], row["team"], row["billing_mode"]) == ("carol", "search", "enterprise")
    assert json.loads(row["params"]) == {"max_tokens": 32}
    code, _, err = run("usage", "--by", "project")
    assert code == 2 and "unknown name(s) project" in err
    code, _, err = run("requests", "--param", "temperature=warm")
    assert code == 2 and "param.temperature must be a number" in err
    code, _, err = run("requests", "--dim", "project=apollo")
    assert code == 2 and "unknown filter project" in err


def test_the_app_refuses_a_dimension_key_it_cannot_carry():
    with pytest.raises(ValueError, match="lower-case letters"), llmtally.attributes(Team="x"):
        pass
    with pytest.raises(ValueError, match="at most 16"), llmtally.attributes(**{f"d{i}": "x" for i in range(17)}):
        pass


@pytest.mark.parametrize(
    ("dimensions", "message"),
    [
        ("team", "dimensions must be a list"),
        (["Team"], "dimensions[0].key must be a name of lower-case letters"),
        (["model"], "dimensions[0].key 'model' is a built-in name"),
        (["team", {"key": "team"}], "team declared more than once"),
        ([{"key": "tier", "label": "yes"}], "dimensions[0].label must be true or false"),
        ([{"key": "tier", "label": True, "max_values": 0}], "dimensions[0].max_values must be a whole number"),
        ([{"key": "tier", "cap": 3}], "dimensions[0]: unknown key(s) cap"),
        ([f"d{i}" for i in range(33)], "at most 32 may be declared"),
    ],
)
def test_bad_dimensions_are_refused_naming_the_key(capsys, tmp_path: Path, dimensions: Any, message: str):
    config = tmp_path / "llmtally.yaml"
    config.write_text(json.dumps({"dimensions": dimensions}))
    code = main(["usage", "--by", "team", "--config", str(config), "--store", f"sqlite:///{tmp_path}/a.db"])
    assert code == 2 and message in capsys.readouterr().err


def test_a_budget_may_scope_only_declared_dimensions(tmp_path: Path):
    from llmtally.exporter.budgets.config import BudgetSettings
    from llmtally.exporter.config import ConfigError, load

    config = tmp_path / "llmtally.yaml"
    config.write_text(json.dumps({"dimensions": ["team"], "budgets": BUDGETS}))
    (budget,) = BudgetSettings.from_config(load(str(config), env={})).budgets
    assert budget.dimensions() == {"team": "platform"} and budget.filters() == {}
    config.write_text(json.dumps({"budgets": BUDGETS}))
    with pytest.raises(ConfigError, match="team"):
        BudgetSettings.from_config(load(str(config), env={}))


def test_schemathesis_with_declared_dimensions_finds_no_server_error(served: Served, tmp_path: Path):
    """The OpenAPI document lists `param.<name>` and each declared dimension with its type; fuzzing them (with
    group_by) finds no 5xx and no answer outside the document."""
    from test_api import fuzz

    document = served.json("/api/v1/openapi.json")
    names = {p["name"] for p in document["paths"]["/api/v1/usage"]["get"]["parameters"]}
    assert {"team", "billing_mode", "param.temperature", "param.max_tokens"} <= names
    code, output, cases = fuzz(served.url, tmp_path, max_examples=20)
    assert code == 0, output[-6000:]
    assert cases and all(case.find("failure") is None and case.find("error") is None for case in cases), output[-6000:]


def test_request_parameters_are_typed_and_bounded_whoever_wrote_them():
    from llmtally.exporter.normalise.request_params import request_params

    assert request_params({"gen_ai.request.model": "m"}) == {}
    found = request_params(
        {
            "gen_ai.request.temperature": "hot",  # not a number: left out
            "gen_ai.request.top_p": float("nan"),  # not finite: left out
            "gen_ai.request.max_completion_tokens": 128.0,  # a whole float is a whole number
            "gen_ai.request.seed": 1.5,  # not whole: left out
            "llm.top_k": 40,  # OpenLLMetry's
            "gen_ai.request.n": 2,
            "llm.chat.stop_sequences": tuple(f"stop-{i}" + "x" * 100 for i in range(20)),
            "gen_ai.output.type": "json",  # a peer's output type
            "gen_ai.request.reasoning_effort": "",  # empty: left out
            "gen_ai.input.messages": "never kept",
        }
    )
    assert found.pop("stop_sequences") == [(f"stop-{i}" + "x" * 100)[:64] for i in range(16)]
    assert found == {"max_tokens": 128, "top_k": 40, "choice_count": 2, "response_format": "json"}
