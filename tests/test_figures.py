"""Filters and figures of the analytics API and commands, on SQLite and PostgreSQL: the exact HTTP status filter,
unknown parameters refused, average cost per request and per 1k tokens, active members, the request log sorted by
cost, latency and tokens (keyset pages), week and month buckets in the configured time zone, the last-hour range.

The deterministic records of test_api's receiver check every figure against sums computed here; a second receiver
per store, in a time zone with a half-hour offset, takes real instrumented traffic (the example app and the error
drill, through the real SDKs against the fake provider) for the figures that depend on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from test_api import ALL, CURRENT, Api, api, cost, figures, ns, shown

from alerting_stack import wait_for
from conftest import fresh_store
from instrumented_app import APP_CALLS, run_instrumented_app
from llmtally.cli import main
from llmtally.demo.fake_provider import FakeProvider
from llmtally.exporter.normalise.record import Record
from receiver import Receiver

__all__ = ["api"]  # the deterministic receiver of test_api, one per store

ZONE = "Asia/Kolkata"  # UTC+05:30: its weeks and months start half-way through a UTC hour
TRAFFIC = Path(__file__).resolve().parent / "dashboard_traffic.py"  # the error drill
HEALTH = {"critical_errors": 4, "warning_errors": 2, "healthy_success_rate": 0.9}


# --- the exact HTTP status filter --------------------------------------------------------------------------------


def ids(records: Iterable[Record]) -> set[str]:
    return {r.record_id for r in records}


def test_http_status_filter_is_exact(api: Api) -> None:
    for code in (429, 500):
        want = [r for r in CURRENT if r.http_status == code]
        assert want and len(want) < len([r for r in CURRENT if r.status == "error"])
        for params in ({"status": str(code)}, {"http_status": str(code)}):
            page = api.json("/api/v1/requests", range="7d", limit=1000, **params)
            assert {r["id"] for r in page["requests"]} == ids(want), params
            assert all(r["http_status"] == code for r in page["requests"])
            report = api.json("/api/v1/usage", range="7d", **params)
            assert shown(report["totals"]) == figures(want), params
            assert report["filters"] == {"http_status": str(code)}
    # Several codes, with other filters, grouped; the errors report and the export take it too.
    both = [r for r in CURRENT if r.http_status in (429, 500)]
    report = api.json("/api/v1/usage", range="7d", http_status="429,500", group_by="provider")
    assert {row["provider"]: row["requests"] for row in report["rows"]} == {
        p: sum(r.provider == p for r in both) for p in {r.provider for r in both}
    }
    groq = [r for r in both if r.provider == "groq"]
    assert api.json("/api/v1/errors", range="7d", http_status=["429", "500"], provider="groq")["total_errors"] == len(
        groq
    )
    lines = api.get("/api/v1/export", range="7d", format="jsonl", http_status="429").text.splitlines()
    assert {json.loads(line)["id"] for line in lines} == ids(r for r in CURRENT if r.http_status == 429)
    # No record answered 418: nothing, never everything.
    assert api.json("/api/v1/requests", range="7d", http_status="418")["requests"] == []
    assert api.json("/api/v1/usage", range="7d", status="418")["totals"]["requests"] == 0
    for bad in ({"http_status": "abc"}, {"http_status": "99"}, {"status": "error,429"}, {"status": "600"}):
        response = api.get("/api/v1/requests", **bad)
        assert response.status_code == 400 and "status" in response.json()["error"], (bad, response.text)


# --- unknown parameters ------------------------------------------------------------------------------------------


def test_unknown_parameters_are_refused_on_every_endpoint(api: Api) -> None:
    some = CURRENT[0].record_id
    paths = {
        "/api/v1/usage": "group_by",
        "/api/v1/requests": "sort",
        f"/api/v1/requests/{some}": "none",
        "/api/v1/errors": "http_status",
        "/api/v1/insights": "range",
        "/api/v1/health": "provider",
        "/api/v1/export": "format",
        "/api/v1/price": "model",
        "/api/v1/budgets": "none",
        "/api/v1/openapi.json": "none",
    }
    for path, listed in paths.items():
        response = api.get(path, http_statuz="429", model="gpt-4o")
        assert response.status_code == 400, (path, response.text)
        message = response.json()["error"]
        assert "http_statuz" in message and listed in message, message
    # Every route the OpenAPI document lists is covered, and what it documents is accepted.
    document = api.json("/api/v1/openapi.json")
    for path, operations in document["paths"].items():
        if not path.startswith("/api/v1/") or "get" not in operations:
            continue
        documented = {p["name"] for p in operations["get"].get("parameters", []) if p["in"] == "query"}
        concrete = path.replace("{request_id}", some)
        assert api.get(concrete, zzz="1").status_code == 400, path
        if path == "/api/v1/price":
            assert api.get(concrete, model="gpt-4o-mini", provider="openai").status_code == 200
        elif path == "/api/v1/requests/stream":  # endless: its answers are read in test_stream.py
            assert "range" not in documented and api.get(concrete, range="7d").status_code == 400
        else:
            answer = api.get(concrete, **({"range": "7d"} if "range" in documented else {}))
            assert answer.status_code == 200, (path, answer.text)


def test_unknown_options_are_refused_by_the_commands(api: Api) -> None:
    for argv in (["usage", "--http-statuz", "429"], ["requests", "--sortt", "cost"], ["health", "--color", "x"]):
        run = subprocess.run(
            [str(Path(sys.executable).with_name("llmtally")), *argv, "--store", api.store],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2 and "unrecognized arguments" in run.stderr, (argv, run.stderr)


# --- averages and active members ---------------------------------------------------------------------------------


def averages(records: list[Record]) -> tuple[float, float]:
    spent = cost(records)
    return spent / len(records) / 1e9, spent * 1000 / sum(r.total_tokens for r in records) / 1e9


def members(records: Iterable[Record]) -> int:
    return len({r.user_id for r in records if r.user_id})


def test_averages_and_active_members(api: Api) -> None:
    report = api.json("/api/v1/usage", range="7d", group_by="model")
    totals = report["totals"]
    per_request, per_1k = averages(CURRENT)
    assert totals["avg_cost_per_request_usd"] == pytest.approx(per_request, abs=1e-9)
    assert totals["cost_per_1k_tokens_usd"] == pytest.approx(per_1k, abs=1e-9)
    assert totals["active_members"] == members(CURRENT) == 2
    for row in report["rows"]:
        rs = [r for r in CURRENT if r.request_model == row["model"]]
        assert row["avg_cost_per_request_usd"] == pytest.approx(averages(rs)[0], abs=1e-9)
        assert row["cost_per_1k_tokens_usd"] == pytest.approx(averages(rs)[1], abs=1e-9)
        assert row["active_members"] == members(rs), row["model"]
    report = api.json("/api/v1/usage", range="7d", group_by="model", user="alice")
    assert report["rows"] and {row["active_members"] for row in report["rows"]} == {1}  # not the total repeated
    # Totals stay exact: the sum of the records, to the nano-dollar.
    assert totals["customer_cost_nusd"] == cost(CURRENT)
    report = api.json("/api/v1/usage", range="7d", group_by="user")
    assert {row["user"]: row["active_members"] for row in report["rows"]} == {"alice": 1, "bob": 1, "": 0}
    empty = api.json("/api/v1/usage", range="7d", user="nobody")["totals"]
    assert (empty["avg_cost_per_request_usd"], empty["cost_per_1k_tokens_usd"], empty["active_members"]) == (
        None,
        None,
        0,
    )


# --- sorting the request log -------------------------------------------------------------------------------------


def walk(api: Api, **params: Any) -> list[str]:
    """Every id of the request log in the asked order, a page of 3 at a time."""
    found: list[str] = []
    cursor = None
    for _ in range(100):
        page = api.json("/api/v1/requests", limit=3, **params, **({"cursor": cursor} if cursor else {}))
        found += [r["id"] for r in page["requests"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("the pages never end")


KEYS = {
    "cost": lambda r: -1 if r.customer_cost_nusd is None else r.customer_cost_nusd,
    "latency": lambda r: r.duration_s,
    "tokens": lambda r: r.total_tokens,
    "time": lambda r: r.start_time_ns,
}


def ordered(records: Iterable[Record], sort: str) -> list[str]:
    key = KEYS[sort.lstrip("-")]
    chosen = sorted(records, key=lambda r: (key(r), r.record_id), reverse=sort.startswith("-"))
    return [r.record_id for r in chosen]


def test_request_log_sorted_by_cost_latency_tokens(api: Api) -> None:
    for sort in ("-cost", "cost", "-latency", "latency", "-tokens", "tokens", "time", "-time"):
        assert walk(api, range="30d", sort=sort) == ordered(ALL, sort), sort
        # Several values of a filter: each combination's pages merged, in the same order.
        chosen = [r for r in ALL if r.provider in ("groq", "anthropic")]
        assert walk(api, range="30d", sort=sort, provider="groq,anthropic") == ordered(chosen, sort), sort
    page = api.json("/api/v1/requests", range="7d", sort="-cost", limit=1)
    assert page["sort"] == "-cost" and page["requests"][0]["id"] == ordered(CURRENT, "-cost")[0]
    # A cursor is for the order it was made in.
    response = api.get("/api/v1/requests", range="7d", sort="latency", cursor=page["next_cursor"])
    assert response.status_code == 400 and "cost" in response.json()["error"]
    response = api.get("/api/v1/requests", sort="price")
    assert response.status_code == 400 and "-latency" in response.json()["error"]


# --- week and month buckets --------------------------------------------------------------------------------------


def local_start(time_ns: int, zone: ZoneInfo, period: str) -> str:
    moment = datetime.fromtimestamp(time_ns / 1e9, zone)
    day = moment.date() - timedelta(days=moment.weekday()) if period == "week" else moment.date().replace(day=1)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return start.isoformat(timespec="seconds").replace("+00:00", "Z")


def test_week_and_month_buckets_in_utc(api: Api) -> None:
    utc = ZoneInfo("UTC")
    for period in ("week", "month"):
        report = api.json("/api/v1/usage", start="2020-01-01", group_by=f"{period},model")
        want: dict[tuple[str, str], list[Record]] = {}
        for r in ALL:
            want.setdefault((local_start(r.start_time_ns, utc, period), r.request_model), []).append(r)
        got = {(row[period], row["model"]): shown(row) for row in report["rows"] if row["requests"]}
        assert got == {k: figures(v) for k, v in want.items()}, period
        assert shown(report["totals"]) == figures(ALL)
        assert report["totals"]["active_members"] == members(ALL)
        starts = sorted({row[period] for row in report["rows"]})
        assert starts[0].startswith("2019-12-30" if period == "week" else "2020-01-01")  # empty buckets filled
        assert all(s.endswith("T00:00:00Z") for s in starts)
    for params, word in (
        ({"group_by": "week,day"}, "one of"),
        ({"group_by": "month", "start": "1970-01-01"}, "600"),
        ({"group_by": "fortnight"}, "week"),
    ):
        response = api.get("/api/v1/usage", **params)
        assert response.status_code == 400 and word in response.json()["error"], (params, response.text)
    assert len(api.json("/api/v1/usage", start="1980-01-01", end="2029-12-31", group_by="month")["rows"]) == 600


# --- real traffic, another time zone -----------------------------------------------------------------------------


@dataclass
class Traffic:
    """A receiver in ZONE with the example app's and the error drill's requests stored."""

    url: str
    store: str
    made: int
    workdir: Path

    def json(self, path: str, **params: Any) -> Any:
        answer = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        assert answer.status_code == 200, (path, params, answer.text)
        return answer.json()

    def records(self) -> list[dict[str, Any]]:
        return self.json("/api/v1/requests", range="1h", limit=1000)["requests"]


def run_drill(receiver: Receiver, cwd: Path) -> int:
    """The error drill (test_dashboards' traffic: a retried 429, then a failure of each kind) -> requests made."""
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMTALLY_", "ANTHROPIC_"))}
    env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint}
    run = subprocess.run(
        [str(launcher), sys.executable, str(TRAFFIC)], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return int(run.stdout.split()[-1])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def traffic(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, provider_server: FakeProvider
) -> Iterator[Traffic]:
    workdir = tmp_path_factory.mktemp(f"traffic-{request.param}")
    url, drop = fresh_store(request, workdir)
    receiver = Receiver(workdir, url, timezone=ZONE, health=HEALTH).start()
    try:
        provider_server.reset()
        run_instrumented_app(provider_server.base_url, workdir, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint)
        made = APP_CALLS + run_drill(receiver, workdir)
        traffic = Traffic(receiver.http_url, url, made, workdir)
        wait_for(lambda: len(traffic.records()) == made, 30, lambda: f"{made} records: {len(traffic.records())}")
        yield traffic
    finally:
        assert receiver.stop() == 0
        drop()


def test_last_hour_active_members_and_http_status_of_real_traffic(traffic: Traffic) -> None:
    report = traffic.json("/api/v1/usage", range="1h", group_by="user")
    span = report["range"]
    assert span["name"] == "1h" and ns(span["end"]) - ns(span["start"]) == 3600 * 10**9
    assert report["totals"]["requests"] == traffic.made
    # The example app's users alice, bob and carol (the drill is carol's too).
    assert report["totals"]["active_members"] == 3
    assert {row["user"]: row["active_members"] for row in report["rows"]} == {"alice": 1, "bob": 1, "carol": 1}
    by_feature = traffic.json("/api/v1/usage", range="1h", group_by="department")
    assert {row["department"]: row["active_members"] for row in by_feature["rows"]} == {
        "research": 1,
        "support": 1,
        "finance": 1,
        "": 1,  # the drill sets no department
    }
    records = traffic.records()
    for code in {r["http_status"] for r in records if r["http_status"]}:
        want = {r["id"] for r in records if r["http_status"] == code}
        page = traffic.json("/api/v1/requests", range="1h", limit=1000, status=str(code))
        assert {r["id"] for r in page["requests"]} == want, code
        assert traffic.json("/api/v1/usage", range="1h", http_status=str(code))["totals"]["requests"] == len(want)
    assert any(r["http_status"] == 429 for r in records)
    # Totals exact: the sum of the records' costs to the nano-dollar.
    costs = [traffic.json(f"/api/v1/requests/{r['id']}")["customer_cost_nusd"] or 0 for r in records]
    assert traffic.json("/api/v1/usage", range="1h")["totals"]["customer_cost_nusd"] == sum(costs) > 0


def test_week_and_month_in_the_configured_zone(traffic: Traffic) -> None:
    zone = ZoneInfo(ZONE)
    records = traffic.records()
    for period in ("week", "month"):
        report = traffic.json("/api/v1/usage", range="30d", group_by=period)
        assert report["timezone"] == ZONE
        rows = {row[period]: row for row in report["rows"]}
        expected = local_start(ns(records[0]["timestamp"]), zone, period)
        assert expected.endswith("+05:30") and expected in rows
        assert rows[expected]["requests"] == traffic.made
        assert report["totals"]["requests"] == traffic.made
        # The first bucket starts at the range's start (cut), each later one at a local midnight.
        later = sorted(rows)[1:]
        assert all(label.endswith("T00:00:00+05:30") for label in later)


def test_commands_show_the_figures(traffic: Traffic, capsys: pytest.CaptureFixture[str]) -> None:
    config = traffic.workdir / "commands.yaml"
    config.write_text(f"store: {traffic.store}\ntimezone: {ZONE}\n")
    assert main(["usage", "--config", str(config), "--range", "1h", "--by", "week", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["timezone"] == ZONE and report["totals"]["active_members"] == 3
    assert report["totals"]["requests"] == traffic.made
    assert all(row["week"].endswith("+05:30") for row in report["rows"])
    assert main(["usage", "--config", str(config), "--range", "1h", "--by", "user"]) == 0
    table = capsys.readouterr().out
    assert "cost/request" in table and "members" in table and "carol" in table
    assert main(["requests", "--config", str(config), "--range", "1h", "--http-status", "429", "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["requests"] and {r["http_status"] for r in page["requests"]} == {429}
    assert main(["requests", "--config", str(config), "--range", "1h", "--status", "429", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == page["requests"]
    argv = ["requests", "--config", str(config), "--range", "1h", "--sort=-latency", "--limit", "3", "--json"]
    assert main(argv) == 0
    shown_ids = [r["latency_ms"] for r in json.loads(capsys.readouterr().out)["requests"]]
    every = sorted((r["latency_ms"] for r in traffic.records()), reverse=True)
    assert shown_ids == every[:3]
    assert main(["requests", "--config", str(config), "--range", "1h", "--sort=-cost"]) == 0
    assert "sorted by -cost" in capsys.readouterr().out
    assert main(["usage", "--config", str(config), "--status", "teapot"]) == 2
    assert "status" in capsys.readouterr().err


# --- health as the add-on defines it -----------------------------------------------------------------------------


def test_health_of_real_traffic_with_configured_bounds(traffic: Traffic) -> None:
    """The error drill fails 5 OpenAI calls (rate limit, server error, invalid request, timeout, connection error)
    and 3 Anthropic ones (auth, model, overloaded): with critical from 4 errors and warning from 2, OpenAI is
    critical and Anthropic warning; every other provider answered every call (healthy)."""
    records = traffic.records()
    report = traffic.json("/api/v1/health", range="1h")
    assert report["thresholds"] == HEALTH
    providers = {p["provider"]: p for p in report["providers"]}
    assert providers["openai"]["errors"] == 5 and providers["openai"]["health"] == "critical"
    assert providers["anthropic"]["errors"] == 3 and providers["anthropic"]["health"] == "warning"
    healthy = {name for name, p in providers.items() if p["health"] == "healthy"}
    assert healthy == set(providers) - {"openai", "anthropic"} and len(healthy) >= 3
    for scope, entries in (("provider", report["providers"]), ("model", report["models"])):
        for entry in entries:
            mine = [
                r
                for r in records
                if r["provider"] == entry["provider"] and (scope == "provider" or r["model"] == entry["model"])
            ]
            failed = [r for r in mine if r["status"] == "error"]
            assert (entry["requests"], entry["errors"]) == (len(mine), len(failed)), entry
            assert entry["success_rate"] == pytest.approx(1 - len(failed) / len(mine), abs=1e-6)
            types: dict[str, int] = {}
            for r in failed:
                types[r["error_type"] or "unknown"] = types.get(r["error_type"] or "unknown", 0) + 1
            assert entry["errors_by_type"] == types, entry
            # The request log is newest first: its first line is the last request, its first success the last use
            # (as the add-on reads it: the last successful usage), its first error the last error.
            assert entry["last_request"] == mine[0]["timestamp"], entry
            succeeded = [r for r in mine if r["status"] == "success"]
            assert entry["last_used"] == (succeeded[0]["timestamp"] if succeeded else None), entry
            if succeeded:
                ago = time.time() - ns(succeeded[0]["timestamp"]) / 1e9
                assert ago - 60 < entry["last_used_seconds_ago"] <= ago + 1, entry
            if failed:
                error = traffic.json(f"/api/v1/requests/{failed[0]['id']}")
                assert entry["last_error"] == {
                    "time": failed[0]["timestamp"],
                    "id": failed[0]["id"],
                    "type": error["error_type"],
                    "http_status": error["http_status"],
                    "message": error["error_message"],
                }
            else:
                assert entry["last_error"] is None
    # The drill's last OpenAI call is the dropped connection, its last Anthropic one the 529 (overloaded).
    assert providers["openai"]["last_error"]["type"] == "connection_error"
    assert providers["anthropic"]["last_error"]["http_status"] == 529
    assert providers["anthropic"]["last_error"]["message"]
    # The Grafana panel's fields are still there.
    assert all(isinstance(p["avg_latency_ms"], float) for p in report["providers"])


def test_health_command_and_bounds_in_the_config(traffic: Traffic, capsys: pytest.CaptureFixture[str]) -> None:
    config = traffic.workdir / "health.yaml"
    config.write_text(json.dumps({"store": traffic.store, "health": HEALTH}))
    assert main(["health", "--config", str(config), "--range", "1h", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {p["provider"]: p["health"] for p in report["providers"]}["openai"] == "critical"
    assert main(["health", "--config", str(config), "--range", "1h"]) == 0
    table = capsys.readouterr().out
    assert "critical" in table and "warning" in table and "connection_error" in table and "critical from 4" in table
    # The defaults (no health: section): 5 errors are a warning, 3 below 95% success degraded.
    config.write_text(json.dumps({"store": traffic.store}))
    assert main(["health", "--config", str(config), "--range", "1h", "--json"]) == 0
    default = {p["provider"]: p["health"] for p in json.loads(capsys.readouterr().out)["providers"]}
    assert (default["openai"], default["anthropic"]) == ("warning", "degraded")
    for bad, word in (
        ({"critical_errors": 0}, "critical_errors"),
        ({"warning_errors": 20}, "warning_errors"),
        ({"healthy_success_rate": 1.5}, "healthy_success_rate"),
        ({"errors": 3}, "health.errors"),
    ):
        config.write_text(json.dumps({"store": traffic.store, "health": bad}))
        assert main(["health", "--config", str(config)]) == 2
        assert word in capsys.readouterr().err
    config.write_text(json.dumps({"store": traffic.store, "timezone": "Mars/Olympus"}))
    assert main(["usage", "--config", str(config), "--by", "week"]) == 2
    assert "Mars/Olympus" in capsys.readouterr().err


def test_unknown_parameters_answered_after_authentication(traffic: Traffic) -> None:
    token = "figures-admin-0123456789"
    receiver = Receiver(
        traffic.workdir, traffic.store, api={"tokens": [{"name": "ops", "role": "admin", "token": token}]}
    ).start()
    try:
        url = f"{receiver.http_url}/api/v1/usage"
        anonymous = httpx.get(url, params={"colour": "red"}, timeout=10)
        assert anonymous.status_code == 401 and "group_by" not in anonymous.text
        known = httpx.get(url, params={"colour": "red"}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert known.status_code == 400 and "colour" in known.json()["error"] and "group_by" in known.json()["error"]
    finally:
        assert receiver.stop() == 0
