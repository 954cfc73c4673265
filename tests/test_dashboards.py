"""The Grafana bundle (grafana-dashboards/): the committed JSON is what build.py generates, every dashboard matches
@grafana/schema's TypeScript types (tsc --strict), the provisioning files expand as Grafana expands them, and on real
data every panel and variable query answers as Grafana would run it, on both stores.

The data test: a real `llmtally serve` on PostgreSQL (budgets, credits, a markup, an API token, alert thresholds) is
fed by the example app and an error drill (every error kind, a retry) under `opentelemetry-instrument`, in two
environments; a real Prometheus (Debian's) scrapes it every second with the rule files of alert-rules/ loaded. The
records are then copied to a SQLite store served by a second `llmtally serve`. Every query of every dashboard runs
with the variables substituted as Grafana does (All, one value, several values): the Prometheus ones through
Prometheus' HTTP API, the API ones as the Infinity plugin sends them (tests/infinity.py: URL, params, the token the
datasource adds, root selector, columns) against each store. Totals must equal `llmtally usage --json` for the same
range and filters; per-interval bars must add up to the store's total.
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
import infinity
import pytest
import yaml
from grafana_provisioning import expand

from alerting_stack import Prometheus, Server, wait_for
from dashboard_queries import (
    ALL,
    Selection,
    Target,
    TimeRange,
    datasource_type,
    interpolate,
    iso_ms,
    label_values_query,
    targets,
)
from instrumented_app import APP_CALLS, run_instrumented_app
from llmtally.exporter.store import open_store
from receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "grafana-dashboards"
DASHBOARDS = BUNDLE / "dashboards"
SCHEMA_CHECK = BUNDLE / "schema-check"
RULES = ROOT / "alert-rules"
TRAFFIC = Path(__file__).resolve().parent / "dashboard_traffic.py"
NAMES = ("overview", "cost", "performance", "errors", "capacity", "audit", "request")
INFINITY = "yesoreyeram-infinity-datasource"
BUDGETS = [
    {"name": "research-openai", "period": "monthly", "amount_usd": 0.01, "scope": {"provider": "openai"}, "team": "r"},
    {"name": "support-daily", "period": "daily", "amount_usd": 5, "scope": {"feature": "support_bot"}, "mode": "hard"},
]
CREDITS = [{"provider": "openai", "balance_usd": 20, "since": "2026-01-01"}]
TOKEN = "grafana-dashboards-test-token-0123456789"
THRESHOLDS = {"error_rate_high": 0.2, "error_rate_critical": 0.4, "latency_p95_seconds": 12.5}


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
    assert types == {"prometheus", "alertmanager", INFINITY}
    used = {datasource_type(t.variables, t.query["datasource"]) for name in NAMES for t in targets(name, load(name))}
    assert used == {"prometheus", INFINITY}
    (manager,) = [s for s in sources["datasources"] if s["type"] == "alertmanager"]
    assert manager["jsonData"]["implementation"] == "prometheus"
    (api,) = [s for s in sources["datasources"] if s["type"] == INFINITY]
    assert api["jsonData"]["auth_method"] == "bearerToken" and "bearerToken" in api["secureJsonData"]
    assert "3.11.1" in (BUNDLE / "provisioning/datasources/llmtally.yaml").read_text()  # the pinned plugin version
    uids = [load(n)["uid"] for n in NAMES]
    assert len(set(uids)) == len(NAMES)
    assert any(p["type"] == "alertlist" for p in load("overview")["panels"])


def _compose_environment() -> dict[str, str]:
    compose = yaml.safe_load((BUNDLE / "docker-compose.yml").read_text())
    environment = compose["services"]["grafana"].get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {str(k): str(v) for k, v in environment.items()}


def _empty_strings(value: Any, where: str = "") -> list[str]:
    if isinstance(value, str):
        return [where] if not value.strip() else []
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _empty_strings(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _empty_strings(v, f"{where}[{i}]")]
    return []


def test_provisioned_datasources_expand_to_values_with_the_compose_environment():
    """Grafana's expansion (values.go: no ${VAR:-default}) with the compose file's Grafana environment leaves no
    URL, user, database, jsonData or secret empty."""
    document = yaml.safe_load((BUNDLE / "provisioning/datasources/llmtally.yaml").read_text())
    expanded = expand(document, _compose_environment())
    empty = [e for s in expanded["datasources"] for e in _empty_strings(s, s["name"])]
    assert not empty, f"empty after Grafana's expansion with docker-compose.yml's grafana environment: {empty}"
    # The defaults syntax the file used to have: Grafana reads it as one variable's name, which is unset.
    assert expand("${LLMTALLY_PROMETHEUS_URL:-http://prometheus:9090}", {"LLMTALLY_PROMETHEUS_URL": "x"}) == ""


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
    answer = httpx.get(f"{receiver.http_url}/api/v1/usage", params={"range": "today"}, headers=AUTH, timeout=5)
    return int(answer.json()["totals"]["requests"])


AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Stack:
    def __init__(self, stores: dict[str, Receiver], prometheus: ScrapingPrometheus, made: int, workdir: Path) -> None:
        self.stores, self.prometheus, self.made, self.workdir = stores, prometheus, made, workdir
        self.receiver = stores["postgresql"]

    def prom(self, path: str, **params: Any) -> Any:
        answer = httpx.get(self.prometheus.url + path, params=params, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def usage_command(self, store: str, span: TimeRange, selection: Selection, today: bool = False) -> dict[str, Any]:
        """`llmtally usage --json` on `store` for the range (or today) and the selection's filters."""
        command = [
            str(Path(sys.executable).with_name("llmtally")),
            "usage",
            "--json",
            "--store",
            self.stores[store].store,
        ]
        command += (
            ["--range", "today"]
            if today
            else ["--range", "custom", "--start", iso_ms(span.start), "--end", iso_ms(span.end)]
        )
        for name, values in selection.values.items():
            if values != [ALL] and name != "budget":
                command += [f"--{name.replace('_', '-')}", ",".join(values)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMTALLY_")}
        run = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.workdir, env=env)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)["totals"]


def copy_to_sqlite(dsn: str, path: Path) -> str:
    """The PostgreSQL store's records written to a new SQLite store (its rollups kept by the store's own writes)."""
    url = f"sqlite:///{path}"
    with open_store(dsn) as source, open_store(url) as target:
        after, records = 0, source.records_between(0, 2**62, 1000)
        while records:
            target.write(records)
            after = records[-1].start_time_ns
            records = [r for r in source.records_between(after, 2**62, 1000) if r.start_time_ns > after]
        assert target.count() == source.count()
    return url


@pytest.fixture(scope="module")
def stack(pg_server, provider_server, tmp_path_factory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("dashboards")
    dsn = pg_server.create_database()
    settings: dict[str, Any] = {
        "budgets": BUDGETS,
        "credits": CREDITS,
        "pricing": {"markup": 0.25},
        "alerts": {"thresholds": THRESHOLDS},
        "api": {"tokens": [{"name": "grafana", "role": "admin", "token": TOKEN}]},
    }
    receiver = Receiver(workdir, dsn, **settings)
    rule_files = sorted(RULES.glob("*.rules.yml"))
    with contextlib.ExitStack() as stop:
        receiver.start()
        stop.callback(receiver.stop)
        prometheus = ScrapingPrometheus(workdir, f"127.0.0.1:{receiver.http_port}", rule_files)
        prometheus.start()
        stop.callback(prometheus.stop)
        made = 0
        # Twice, with scrapes in between, so rate() and increase() see every counter move.
        for _ in range(2):
            provider_server.reset()
            run_instrumented_app(
                provider_server.base_url,
                workdir,
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint,
                LLMTALLY_ENVIRONMENT="prod",
            )
            made += APP_CALLS
            made += run_error_drill(receiver, workdir)
            wait_stored(receiver, made)
            time.sleep(3)
        sqlite = Receiver(workdir, copy_to_sqlite(dsn, workdir / "copy.db"), **settings)
        sqlite.start()
        stop.callback(sqlite.stop)
        stack = Stack({"postgresql": receiver, "sqlite": sqlite}, prometheus, made, workdir)
        wait_for(
            lambda: _prom_requests(stack) == made,
            30,
            lambda: f"Prometheus sees {made} requests: {_prom_requests(stack)}",
        )
        time.sleep(2)  # the recording rules' next evaluation
        yield stack
    pg_server.drop_database(dsn)


def _prom_requests(stack: Stack) -> float:
    result = stack.prom("/api/v1/query", query="sum(completion_requests_total)")["result"]
    return float(result[0]["value"][1]) if result else 0.0


def _span(stack: Stack) -> TimeRange:
    end = time.time()
    return TimeRange(end - 300, end)


def run_target(stack: Stack, target: Target, selection: Selection, span: TimeRange, store: str = "postgresql") -> Any:
    """The target's answer: Prometheus series, or the Infinity frame; fails on an error."""
    if target.kind == "api":
        query = interpolated(target.query, target.variables, selection, span)
        return infinity.run(stack.stores[store].http_url, TOKEN, query)
    expr = interpolate(target.query["expr"], target.variables, selection, span)
    if target.query.get("instant"):
        result: list[Any] = stack.prom("/api/v1/query", query=expr, time=span.end)["result"]
    else:
        step = f"{span.interval:g}"
        start, end = _aligned(span)
        result = stack.prom("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"]
    return result


def interpolated(value: Any, variables: list[dict[str, Any]], selection: Selection, span: TimeRange) -> Any:
    """Every string of an Infinity query interpolated (the plugin's interpolateQuery: url, params, root selector)."""
    if isinstance(value, str):
        return interpolate(value, variables, selection, span)
    if isinstance(value, list):
        return [interpolated(v, variables, selection, span) for v in value]
    if isinstance(value, dict):
        return {k: interpolated(v, variables, selection, span) for k, v in value.items()}
    return value


def _aligned(span: TimeRange) -> tuple[float, float]:
    """Grafana's Prometheus range: start and end floored to the step (promlib's alignTimeRange)."""
    step = span.interval
    return (span.start // step) * step, (span.end // step) * step


def has_data(kind: str, answer: Any) -> bool:
    if kind == "api":
        return any(v is not None for values in answer.values() for v in values)
    values = [s["value"][1] for s in answer if "value" in s] + [v[1] for s in answer for v in s.get("values", [])]
    return any(v not in ("NaN", "+Inf", "-Inf") for v in values)


def variable_values(stack: Stack, variable: dict[str, Any], selection: Selection, span: TimeRange, names: list[dict]):
    if variable["type"] == "custom":
        return variable["query"].split(",")
    if variable["type"] != "query":
        return None
    query = variable["query"]
    if query.get("queryType") == "infinity":  # the first field's values
        infinity_query = interpolated(query["infinityQuery"], names, selection, span)
        frame = infinity.run(stack.receiver.http_url, TOKEN, infinity_query)
        return [v for v in next(iter(frame.values())) if v is not None]
    label, selector = label_values_query(interpolate(query["query"], names, selection, span))
    params: dict[str, Any] = {"start": span.start, "end": span.end}
    if selector:
        params["match[]"] = selector
    return stack.prom(f"/api/v1/label/{label}/values", **params)


SELECTIONS = {
    "all": Selection(),
    "one": Selection({"provider": ["openai"], "status": ["error"]}),
    "several": Selection(
        {
            "environment": ["prod", "staging"],
            "provider": ["openai", "anthropic"],
            "model": ["gpt-4o-mini", "claude-haiku-4-5"],
            "user": ["carol", "alice"],
        }
    ),
}


def _request_id(stack: Stack) -> str:
    """A request with events (the drill's retried call)."""
    api = f"{stack.receiver.http_url}/api/v1/requests"
    log = httpx.get(api, params={"limit": 100, "feature": "error_drill"}, headers=AUTH, timeout=10).json()
    for line in log["requests"]:
        if httpx.get(f"{api}/{line['id']}", headers=AUTH, timeout=10).json()["events"]:
            return str(line["id"])
    raise AssertionError("no request with events")


@pytest.mark.parametrize("chosen", sorted(SELECTIONS))
def test_every_panel_and_variable_query_answers_with_data(stack, chosen):
    selection = Selection({**SELECTIONS[chosen].values, "request": [_request_id(stack)]})
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
            for store in stack.stores if target.kind == "api" else ["postgresql"]:
                counted += 1
                if not has_data(target.kind, run_target(stack, target, selection, span, store)):
                    empty.append(f"{target.name()} ({store})")
        for annotation in document.get("annotations", {}).get("list", []):
            expr = interpolate(annotation["target"]["expr"], variables, selection, span)
            stack.prom("/api/v1/query_range", query=expr, start=span.start, end=span.end, step="15")
    # A request's rate limits exist when its provider sent the headers (the drill's fake provider does not).
    empty = [e for e in empty if not e.startswith("request / Rate limits /")]
    assert not empty, f"queries without data ({chosen}): {empty}"
    assert counted > 100


def _targets(dashboard: str, title: str) -> list[Target]:
    found = [t for t in targets(dashboard, load(dashboard)) if t.panel == title]
    assert found, (dashboard, title)
    return found


def _api_value(stack: Stack, dashboard: str, title: str, selection: Selection, store: str) -> float:
    (target, *_) = _targets(dashboard, title)
    frame = run_target(stack, target, selection, _span(stack), store)
    (column,) = [c["text"] for c in target.query["columns"]][:1]
    (value,) = frame[column]
    return float(value)


TOTALS = [
    ("overview", "Requests", "requests"),
    ("overview", "Errors", "errors"),
    ("overview", "Error rate", "error_rate"),
    ("overview", "Spend", "customer_cost_usd"),
    ("overview", "Unpriced requests", "unpriced_requests"),
    ("cost", "Provider cost in range", "provider_cost_usd"),
    ("cost", "Cached input tokens", "cached_tokens"),
    ("audit", "Tokens", "total_tokens"),
]


@pytest.mark.parametrize("store", ["postgresql", "sqlite"])
def test_totals_equal_the_store(stack, store):
    """Every total panel equals `llmtally usage --json` for the same range and filters, on each store."""
    span = _span(stack)
    for chosen in ("all", "one", "several"):
        selection = SELECTIONS[chosen]
        expected = stack.usage_command(store, span, selection)
        for dashboard, title, figure in TOTALS:
            got = _api_value(stack, dashboard, title, selection, store)
            assert got == pytest.approx(expected[figure], rel=1e-9, abs=1e-12), (chosen, dashboard, title)
        today = stack.usage_command(store, span, selection, today=True)
        for dashboard in ("overview", "cost"):
            got = _api_value(stack, dashboard, "Spend today", selection, store)
            assert got == pytest.approx(today["customer_cost_usd"], rel=1e-9, abs=1e-12), (chosen, dashboard)
    everything = stack.usage_command(store, span, Selection())
    assert everything["requests"] == stack.made
    # Several values per filter, checked another way: the export pages the records themselves (one query per
    # combination of values, merged), the usage report groups the rollups.
    several = SELECTIONS["several"]
    params = [("range", "custom"), ("start", iso_ms(span.start)), ("end", iso_ms(span.end)), ("format", "json")]
    params += [(name, value) for name, values in several.values.items() for value in values]  # repeated parameters
    exported = httpx.get(f"{stack.stores[store].http_url}/api/v1/export", params=params, headers=AUTH, timeout=30)
    records = exported.json()
    totals = stack.usage_command(store, span, several)
    assert len(records) == totals["requests"] and len({r["id"] for r in records}) == len(records)
    assert sum(r["customer_cost_nusd"] or 0 for r in records) == totals["customer_cost_nusd"]
    assert {(r["provider"], r["model"], r["environment"], r["user"]) for r in records} <= {
        (p, m, e, u)
        for p in ("openai", "anthropic")
        for m in ("gpt-4o-mini", "claude-haiku-4-5")
        for e in ("prod", "staging")
        for u in ("carol", "alice")
    }
    assert 0 < stack.usage_command(store, span, SELECTIONS["several"])["requests"] < stack.made


def test_a_healthy_selection_shows_zero(stack):
    """No error in the selection: the error panels answer 0, not "No data"."""
    healthy = Selection({"feature": [f for f in _features(stack) if f != "error_drill"][:1]})
    span = _span(stack)
    assert _api_value(stack, "errors", "Errors", healthy, "postgresql") == 0
    assert _api_value(stack, "errors", "Error rate", healthy, "postgresql") == 0
    (per_type,) = _targets("errors", "Errors per second by type")
    series = run_target(stack, per_type, healthy, span)
    assert series and all(float(v) == 0 for s in series for _, v in s["values"]), series
    (ratio, *_) = _targets("errors", "Error rate by provider (5 min, as LLMErrorRate* see it)")
    series = run_target(stack, ratio, healthy, span)
    assert series and all(float(v) == 0 for s in series for _, v in s["values"][-5:]), series


def _features(stack: Stack) -> list[str]:
    return stack.prom("/api/v1/label/feature/values")


def test_bars_per_interval_add_up_to_the_store(stack):
    """The per-interval spend bars: each point's window is the step ($__interval at a $__interval step), so the
    points add up to what the store holds for the range."""
    span = _span(stack)
    expected = stack.usage_command("postgresql", span, Selection())
    for title, figure in (
        ("Spend per interval by provider", "customer_cost_usd"),
        ("Customer against provider cost per interval", "customer_cost_usd"),
    ):
        target = _targets("cost", title)[0]
        assert "[$__interval]" in target.query["expr"] and "$__rate_interval" not in target.query["expr"]
        series = run_target(stack, target, Selection(), span)
        points = sum(float(v) for s in series for _, v in s["values"])
        assert points == pytest.approx(expected[figure], rel=1e-6), title


def _config_thresholds(stack: Stack, dashboard: str, title: str) -> list[float]:
    """The threshold steps Grafana's configFromData transformations give the panel (threshold1: a red step at each
    mapped value)."""
    (panel,) = [p for p in load(dashboard)["panels"] if p.get("title") == title]
    found = []
    for transformation in panel.get("transformations", []):
        if transformation["id"] != "configFromData":
            continue
        ref = transformation["options"]["configRefId"]
        (target,) = [t for t in _targets(dashboard, title) if t.query["refId"] == ref]
        (series,) = run_target(stack, target, Selection(), _span(stack))
        for mapping in transformation["options"]["mappings"]:
            assert mapping["handlerKey"] == "threshold1" and mapping["fieldName"] == target.query["legendFormat"]
            found.append(float(series["value"][1]))
    return found


def test_thresholds_come_from_the_alert_settings(stack):
    """The panels' colours and the alerts read the same number: completion_alert_threshold from llmtally.yaml."""
    rate = [THRESHOLDS["error_rate_high"], THRESHOLDS["error_rate_critical"]]
    assert _config_thresholds(stack, "overview", "Error rate") == rate
    assert _config_thresholds(stack, "errors", "Error rate") == rate
    assert _config_thresholds(stack, "performance", "Duration p50 / p95 / p99") == [THRESHOLDS["latency_p95_seconds"]]
    rules = (RULES / "llmtally-alerts.rules.yml").read_text()
    for key in THRESHOLDS:
        assert f'completion_alert_threshold{{alert="{key}"}}' in rules


def test_annotations_are_named_by_alert():
    for name in ("overview", "cost", "performance", "errors", "capacity"):
        (annotation,) = load(name)["annotations"]["list"]
        assert annotation["titleFormat"] == "{{alertname}}"
        assert set(annotation["tagKeys"].split(",")) >= {"alertname", "severity", "family"}


def test_request_details_are_reached_through_the_datasource(stack):
    """The request log links to the request dashboard (never to /api/v1 in the browser), which reads the request
    through the API datasource on either store; without the token the API refuses."""
    for dashboard, title in (("audit", "Recent requests"), ("errors", "Recent errors")):
        (panel,) = [p for p in load(dashboard)["panels"] if p.get("title") == title]
        links = [
            link
            for o in panel["fieldConfig"]["overrides"]
            for p in o["properties"]
            if p["id"] == "links"
            for link in p["value"]
        ]
        assert links and all(link["url"].startswith("/d/llmtally-request/") for link in links)
        assert "/api/v1" not in json.dumps(links)
    request_id = _request_id(stack)
    for store in stack.stores:
        for target in targets("request", load("request")):
            frame = run_target(stack, target, Selection({"request": [request_id]}), _span(stack), store)
            if target.panel == "Request":
                assert frame["id"] == [request_id], store
    assert httpx.get(f"{stack.receiver.http_url}/api/v1/requests/{request_id}", timeout=5).status_code == 401


def test_budget_panel_matches_the_budgets(stack):
    (target, *_) = _targets("cost", "Budget utilisation")
    frame = run_target(stack, target, Selection(), _span(stack))
    budgets = httpx.get(f"{stack.receiver.http_url}/api/v1/budgets", headers=AUTH, timeout=5).json()["budgets"]
    assert dict(zip(frame["budget"], frame["utilization"], strict=True)) == {
        b["name"]: pytest.approx(b["utilization"]) for b in budgets
    }
