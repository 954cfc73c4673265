"""The Grafana bundle (grafana-dashboards/): the committed JSON is what build.py generates, every dashboard matches
@grafana/schema's TypeScript types (tsc --strict), and on real data every panel and variable query answers.

The data test: a real `llmtally serve` on PostgreSQL (budgets, credits, a markup) is fed by the example app and an
error drill (every error kind, a retry) under `opentelemetry-instrument`, in two environments, twice; a real
Prometheus (Debian's) scrapes it every second with the recording rules of alert-rules/ loaded. Then every query of
every dashboard runs through Prometheus' HTTP API or on the audit store, with the variables substituted as Grafana
does (All, then a multi-value selection), and must answer with data; a few values are compared with the store.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from alerting_stack import Prometheus, Server, wait_for
from dashboard_queries import (
    Selection,
    Target,
    TimeRange,
    datasource_type,
    expand_sql_macros,
    interpolate,
    label_values_query,
    targets,
)
from instrumented_app import APP_CALLS, run_instrumented_app
from receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "grafana-dashboards"
DASHBOARDS = BUNDLE / "dashboards"
SCHEMA_CHECK = BUNDLE / "schema-check"
RULES = ROOT / "alert-rules"
TRAFFIC = Path(__file__).resolve().parent / "dashboard_traffic.py"
NAMES = ("overview", "cost", "performance", "errors", "capacity", "audit")
BUDGETS = [
    {"name": "research-openai", "period": "monthly", "amount_usd": 0.01, "scope": {"provider": "openai"}, "team": "r"},
    {"name": "support-daily", "period": "daily", "amount_usd": 5, "scope": {"feature": "support_bot"}, "mode": "hard"},
]
CREDITS = [{"provider": "openai", "balance_usd": 20, "since": "2026-01-01"}]


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DASHBOARDS / f"{name}.json").read_text())
    return document


# --- generated from code, checked against Grafana's types ----------------------------------------------------------


def test_committed_json_is_what_build_generates():
    sys.path.insert(0, str(BUNDLE))
    try:
        import build  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(BUNDLE))
    files = build.built()
    assert sorted(files) == sorted(f"{n}.json" for n in NAMES)
    committed = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert committed == files, "run: python grafana-dashboards/build.py"
    check = subprocess.run([sys.executable, str(BUNDLE / "build.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def schema_check(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not (SCHEMA_CHECK / "node_modules" / "@grafana" / "schema").is_dir():
        pytest.fail("Node.js and the checker's packages are needed: (cd grafana-dashboards/schema-check && npm ci)")
    return subprocess.run(
        [node, "check.mjs", *map(str, files)], cwd=SCHEMA_CHECK, capture_output=True, text=True, timeout=120
    )


def test_dashboards_match_the_grafana_schema_types():
    run = schema_check()
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(NAMES)} dashboard(s) match" in run.stdout


def _first(document: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(p for p in document["panels"] if p["type"] == kind)


BROKEN = {
    "bad enum value": lambda d: _first(d, "stat")["options"].update(colorMode="rainbow"),
    "unknown key": lambda d: _first(d, "timeseries")["fieldConfig"]["defaults"].update(unitt="s"),
    "wrong type": lambda d: _first(d, "bargauge")["gridPos"].update(h="8"),
    "unknown query key": lambda d: _first(d, "stat")["targets"][0].update(exprr="up"),
    "bad custom enum": lambda d: _first(d, "timeseries")["fieldConfig"]["defaults"]["custom"].update(drawStyle="dots"),
    "bad numeric enum": lambda d: d["templating"]["list"][1].update(refresh=7),
    "unknown panel type": lambda d: _first(d, "stat").update(type="stats"),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_the_schema_check_fails_on_a_broken_dashboard(breakage, tmp_path):
    document = copy.deepcopy(load("overview"))
    BROKEN[breakage](document)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(document))
    run = schema_check(path)
    assert run.returncode != 0, f"{breakage} passed the check: {run.stdout}"
    assert "error TS" in run.stdout


def test_provisioning_points_at_the_dashboards():
    providers = yaml.safe_load((BUNDLE / "provisioning/dashboards/llmtally.yaml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    sources = yaml.safe_load((BUNDLE / "provisioning/datasources/llmtally.yaml").read_text())
    types = {s["type"] for s in sources["datasources"]}
    used = {datasource_type(t.variables, t.query["datasource"]) for name in NAMES for t in targets(name, load(name))}
    assert used == {"prometheus", "grafana-postgresql-datasource"}
    assert used <= types
    uids = [load(n)["uid"] for n in NAMES]
    assert len(set(uids)) == len(NAMES)


# --- real data ---------------------------------------------------------------------------------------------------


class ScrapingPrometheus(Prometheus):
    """Prometheus scraping `target` every second with `rule_files`; no Alertmanager."""

    def __init__(self, workdir: Path, target: str, rule_files: list[Path]) -> None:
        Server.__init__(self, workdir, "prometheus")
        self.config = workdir / "prometheus.yml"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "llmtally", "static_configs": [{"targets": [target]}]}],
        }
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))


def run_error_drill(receiver: Receiver, cwd: Path) -> int:
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMTALLY_", "ANTHROPIC_"))}
    env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "500"}
    run = subprocess.run(
        [str(launcher), sys.executable, str(TRAFFIC)], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return int(run.stdout.split()[-1])


def wait_stored(receiver: Receiver, expected: int) -> None:
    wait_for(lambda: stored(receiver) == expected, 30, lambda: f"{expected} records stored: {stored(receiver)}")


def stored(receiver: Receiver) -> int:
    answer = httpx.get(f"{receiver.http_url}/api/v1/usage", params={"range": "today"}, timeout=5).json()
    return int(answer["totals"]["requests"])


class Stack:
    def __init__(self, receiver: Receiver, prometheus: ScrapingPrometheus, dsn: str, made: int) -> None:
        self.receiver, self.prometheus, self.dsn, self.made = receiver, prometheus, dsn, made

    def prom(self, path: str, **params: Any) -> Any:
        answer = httpx.get(self.prometheus.url + path, params=params, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return list(conn.execute(query).fetchall())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stack(pg_server, provider_server, tmp_path_factory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("dashboards")
    dsn = pg_server.create_database()
    receiver = Receiver(
        workdir, dsn, budgets=BUDGETS, credits=CREDITS, pricing={"markup": 0.25}, alerts={"thresholds": {}}
    )
    rule_files = sorted(RULES.glob("*.rules.yml"))
    with contextlib.ExitStack() as stop:
        receiver.start()
        stop.callback(receiver.stop)
        prometheus = ScrapingPrometheus(workdir, f"127.0.0.1:{receiver.http_port}", rule_files)
        prometheus.start()
        stop.callback(prometheus.stop)
        made = 0
        # Twice each, with scrapes in between, so rate() and increase() see every counter move.
        for environment in ("prod", "prod"):
            provider_server.reset()
            run_instrumented_app(
                provider_server.base_url,
                workdir,
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint,
                LLMTALLY_ENVIRONMENT=environment,
            )
            made += APP_CALLS
            made += run_error_drill(receiver, workdir)
            wait_stored(receiver, made)
            time.sleep(3)
        stack = Stack(receiver, prometheus, dsn, made)
        wait_for(
            lambda: _prom_requests(stack) == made,
            30,
            lambda: f"Prometheus sees {made} requests: {_prom_requests(stack)}",
        )
        yield stack
    pg_server.drop_database(dsn)


def _prom_requests(stack: Stack) -> float:
    result = stack.prom("/api/v1/query", query="sum(completion_requests_total)")["result"]
    return float(result[0]["value"][1]) if result else 0.0


def _span(stack: Stack) -> TimeRange:
    end = time.time()
    return TimeRange(end - 300, end)


def run_target(stack: Stack, target: Target, selection: Selection, span: TimeRange) -> list[Any]:
    """The target's answer (series or rows); fails on an error."""
    if target.kind == "sql":
        sql = expand_sql_macros(interpolate(target.query["rawSql"], target.variables, selection, span), span)
        return stack.sql(sql)
    expr = interpolate(target.query["expr"], target.variables, selection, span)
    if target.query.get("instant"):
        result: list[Any] = stack.prom("/api/v1/query", query=expr, time=span.end)["result"]
    else:
        step = f"{span.interval:g}"
        result = stack.prom("/api/v1/query_range", query=expr, start=span.start, end=span.end, step=step)["result"]
    return result


def has_data(kind: str, answer: list[Any]) -> bool:
    if kind == "sql":
        return any(any(value is not None for value in row) for row in answer)
    values = [s["value"][1] for s in answer if "value" in s] + [v[1] for s in answer for v in s.get("values", [])]
    return any(v not in ("NaN", "+Inf", "-Inf") for v in values)


def variable_values(stack: Stack, variable: dict[str, Any], selection: Selection, span: TimeRange, names: list[dict]):
    if variable["type"] != "query":
        return None
    query = variable["query"]
    if isinstance(query, dict):  # Prometheus: label_values(selector, label) -> the labels API
        label, selector = label_values_query(interpolate(query["query"], names, selection, span))
        params: dict[str, Any] = {"start": span.start, "end": span.end}
        if selector:
            params["match[]"] = selector
        return stack.prom(f"/api/v1/label/{label}/values", **params)
    return [row[0] for row in stack.sql(interpolate(query, names, selection, span))]


SELECTIONS = {
    "all": Selection(),
    "several": Selection(
        {
            "environment": ["prod", "staging"],
            "provider": ["openai", "anthropic"],
            "model": ["gpt-4o-mini", "claude-haiku-4-5"],
        }
    ),
}


@pytest.mark.parametrize("chosen", sorted(SELECTIONS))
def test_every_panel_and_variable_query_answers_with_data(stack, chosen):
    selection = SELECTIONS[chosen]
    span = _span(stack)
    empty, counted = [], 0
    for name in NAMES:
        document = load(name)
        variables = document["templating"]["list"]
        for variable in variables:
            values = variable_values(stack, variable, selection, span, variables)
            if values is not None:
                counted += 1
                if not values:
                    empty.append(f"{name} / variable {variable['name']}")
        for target in targets(name, document):
            counted += 1
            if not has_data(target.kind, run_target(stack, target, selection, span)):
                empty.append(target.name())
        for annotation in document.get("annotations", {}).get("list", []):
            expr = interpolate(annotation["target"]["expr"], variables, selection, span)
            stack.prom("/api/v1/query_range", query=expr, start=span.start, end=span.end, step="15")
    assert not empty, f"queries without data ({chosen}): {empty}"
    assert counted > 80


def _value(stack: Stack, dashboard: str, title: str, selection: Selection | None = None) -> float:
    (target,) = [t for t in targets(dashboard, load(dashboard)) if t.panel == title]
    answer = run_target(stack, target, selection or Selection(), _span(stack))
    if target.kind == "sql":
        return float(answer[0][0])
    assert len(answer) == 1, answer
    return float(answer[0]["value"][1])


def test_values_match_the_store(stack):
    api = f"{stack.receiver.http_url}/api/v1/usage"
    today = httpx.get(api, params={"range": "today"}, timeout=5).json()["totals"]
    assert today["requests"] == stack.made
    assert _value(stack, "overview", "Spend today") == pytest.approx(today["customer_cost_usd"], rel=1e-9)
    assert _value(stack, "audit", "Requests") == stack.made
    assert _value(stack, "audit", "Spend") == pytest.approx(today["customer_cost_usd"], rel=1e-9)
    staging = httpx.get(api, params={"range": "today", "environment": "staging"}, timeout=5).json()["totals"]
    only_staging = Selection({"environment": ["staging"]})
    assert 0 < staging["customer_cost_usd"] < today["customer_cost_usd"]
    assert _value(stack, "overview", "Spend today", only_staging) == pytest.approx(staging["customer_cost_usd"])
    assert _value(stack, "audit", "Requests", only_staging) == staging["requests"]
    # increase() over the range counts what happened after each series' first scrape: at least the second round.
    requests = _value(stack, "overview", "Requests")
    assert stack.made / 2 <= requests <= stack.made * 1.2
    errors = httpx.get(f"{stack.receiver.http_url}/api/v1/errors", params={"range": "today"}, timeout=5).json()
    assert errors["total_errors"] / 2 <= _value(stack, "errors", "Errors") <= errors["total_errors"] * 1.2
    assert _value(stack, "errors", "Retries") >= 2  # one retried call per drill, plus the SDKs' retries of failures
    budget = _value(stack, "cost", "Budget utilisation", Selection({"budget": ["research-openai"]}))
    budgets = httpx.get(f"{stack.receiver.http_url}/api/v1/budgets", timeout=5).json()["budgets"]
    (research,) = [b for b in budgets if b["name"] == "research-openai"]
    assert budget == pytest.approx(research["utilization"], rel=1e-6)
