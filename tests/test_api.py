"""The analytics API of `llmtally serve` (/api/v1) on SQLite and on a real PostgreSQL server: every report checked
against sums computed here from the records written, bad parameters, API tokens and roles, the loopback rule, and
schemathesis fuzzing of the OpenAPI document (no answer may be a server error)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import fresh_store
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.store import open_store
from receiver import Receiver, free_port

HOUR = 3_600_000_000_000
DAY = 24 * HOUR
NOW = time.time_ns() // 1000 * 1000  # whole microseconds, as the API shows times
HYPERLINK = '=HYPERLINK("http://evil.example/","click")'
PRODUCTS = (  # provider, requested model, model that answered
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001"),
    ("groq", "llama-3.3", "llama-3.3"),
)
# Failures by record number: (http_status, error_type). groq fails 3 times in 5 (critical), anthropic once in 5
# (warning), openai never (healthy).
FAILURES = {3: (429, "rate_limit"), 7: (500, "server_error"), 11: (429, "rate_limit"), 6: (500, "server_error")}
UNITS = {"audio_seconds": 2.5, "images": 2, "input_image_tokens": 64}  # record 6's other billed units


def record(n: int, start_ns: int, **fields: Any) -> Record:
    """Record number n, deterministic: tokens and costs grow with n."""
    provider, model, response_model = PRODUCTS[n % 4]
    failure = FAILURES.get(n)
    inp, out = 100 + 37 * n, 20 + 11 * n
    priced = n % 9 != 5
    values: dict[str, Any] = {
        "record_id": f"{n:016x}",
        "start_time_ns": start_ns,
        "end_time_ns": start_ns + 1_200_000_000,
        "provider": provider,
        "operation": "embeddings" if n % 5 == 0 else "chat",
        "request_model": model,
        "response_model": response_model,
        "status": "error" if failure else "success",
        "http_status": failure[0] if failure else None,
        "error_type": failure[1] if failure else None,
        "error_message": f"HTTP {failure[0]}" if failure else None,
        "duration_s": 0.5 + n / 10,
        "ttft_s": 0.1 if n % 2 else None,
        "stream": bool(n % 2),
        "input_tokens": inp,
        "output_tokens": out,
        "total_tokens": inp + out,
        "cached_tokens": inp // 4,
        "provider_cost_nusd": inp * 150 + out * 600 if priced else None,
        "customer_cost_nusd": inp * 180 + out * 720 + 1000 * n if priced else None,
        "priced": priced,
        "price_source": "test" if priced else "unpriced",
        "user_id": ("alice", "bob", None)[n % 3],
        "api_key": f"team-{n % 2}",
        "feature": HYPERLINK if n == 10 else ("search", "summarise", None)[n % 3],
        "environment": "production",
        "finish_reasons": [] if failure else ["stop"],
    }
    if n % 4 == 1:
        values["input_messages"] = json.dumps([{"role": "user", "content": f"question {n}"}])
        values["output_messages"] = json.dumps([{"role": "assistant", "content": f"answer {n}"}])
    if n == 3:
        values["events"] = [{"type": "retry", "attempt": 1, "error_type": "rate_limit"}]
    if n == 6:
        values["units"] = UNITS
    values.update(fields)
    return Record(**values)


# The last 7 days: 22 records from 1 to about 85 hours ago (so several days of a 7-day range are empty).
CURRENT = [record(n, NOW - (n * 4 + 1) * HOUR - 17 * 60 * 10**9) for n in range(22)]
# 9 to 12 days ago: the previous 7-day period (inside 30d, outside 7d).
PREVIOUS = [record(100 + k, NOW - (9 + k) * DAY, operation="chat", user_id="alice") for k in range(4)]
ALL = CURRENT + PREVIOUS


# --- expectations, from the records ------------------------------------------------------------------------------


def cost(records: Iterable[Record]) -> int:
    return sum(r.customer_cost_nusd or 0 for r in records)


def usd(nusd: int) -> float:
    return round(nusd / 1e9, 9)


def figures(records: Sequence[Record]) -> dict[str, int]:
    return {
        "requests": len(records),
        "errors": sum(r.status == "error" for r in records),
        "input_tokens": sum(r.input_tokens for r in records),
        "output_tokens": sum(r.output_tokens for r in records),
        "total_tokens": sum(r.total_tokens for r in records),
        "cached_tokens": sum(r.cached_tokens for r in records),
        "provider_cost_nusd": sum(r.provider_cost_nusd or 0 for r in records),
        "customer_cost_nusd": cost(records),
        "unpriced_requests": sum(not r.priced for r in records),
    }


def shown(row: dict[str, Any]) -> dict[str, int]:
    """The figures of a usage row that `figures()` computes."""
    return {k: row[k] for k in figures([])}


def day_of(time_ns: int) -> str:
    return iso(time_ns - time_ns % DAY)


def iso(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ns(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


KEYS: dict[str, Callable[[Record], Any]] = {
    "model": lambda r: r.request_model,
    "user": lambda r: r.user_id or "",
    "provider": lambda r: r.provider,
    "operation": lambda r: r.operation,
    "feature": lambda r: r.feature or "",
    "api_key": lambda r: r.api_key or "",
    "day": lambda r: day_of(r.start_time_ns),
}


def grouped(records: Iterable[Record], *names: str) -> dict[tuple[Any, ...], list[Record]]:
    out: dict[tuple[Any, ...], list[Record]] = defaultdict(list)
    for r in records:
        out[tuple(KEYS[n](r) for n in names)].append(r)
    return dict(out)


def newest_first(records: Iterable[Record]) -> list[str]:
    return [r.record_id for r in sorted(records, key=lambda r: (r.start_time_ns, r.record_id), reverse=True)]


def http_class(r: Record, low: int) -> bool:
    return r.http_status is not None and low <= r.http_status < low + 100


STATUS = {
    "error": lambda r: r.status == "error",
    "success": lambda r: r.status == "success",
    "4xx": lambda r: http_class(r, 400),
    "5xx": lambda r: http_class(r, 500),
}


# --- the receiver ------------------------------------------------------------------------------------------------


@dataclass
class Api:
    """A running `llmtally serve` with ALL in its store."""

    url: str
    store: str
    log: Path

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=30)

    def json(self, path: str, token: str | None = None, **params: Any) -> Any:
        response = self.get(path, token, **params)
        assert response.status_code == 200, (path, params, response.status_code, response.text)
        return response.json()


def write(url: str, records: Sequence[Record]) -> None:
    with open_store(url) as store:
        assert len(store.write(records)) == len(records)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One receiver per store for the module: the records written before it starts, the current ones in two
    batches, the second while it runs."""
    workdir = tmp_path_factory.mktemp(f"api-{request.param}")
    url, drop = fresh_store(request, workdir)
    write(url, PREVIOUS + CURRENT[:12])
    receiver = Receiver(workdir, url).start()
    try:
        write(url, CURRENT[12:])
        yield Api(receiver.http_url, url, receiver.log)
    finally:
        assert receiver.stop() == 0
        drop()


# --- usage -------------------------------------------------------------------------------------------------------


def test_usage_totals_and_groups(api: Api) -> None:
    report = api.json("/api/v1/usage", range="7d")
    assert report["group_by"] == []
    assert shown(report["totals"]) == figures(CURRENT)
    assert report["totals"]["customer_cost_usd"] == pytest.approx(usd(cost(CURRENT)), abs=1e-9)
    assert report["totals"]["error_rate"] == pytest.approx(figures(CURRENT)["errors"] / len(CURRENT), abs=1e-6)

    for names in (["model"], ["user"], ["provider", "operation"], ["feature"]):
        report = api.json("/api/v1/usage", range="7d", group_by=",".join(names))
        got = {tuple(row[n] for n in names): shown(row) for row in report["rows"]}
        assert got == {key: figures(rs) for key, rs in grouped(CURRENT, *names).items()}, names
        assert shown(report["totals"]) == figures(CURRENT)

    # The default range is 7d too; 30d takes the previous period's records as well.
    assert api.json("/api/v1/usage")["totals"]["requests"] == len(CURRENT)
    assert shown(api.json("/api/v1/usage", range="30d")["totals"]) == figures(ALL)


def test_usage_by_day_has_every_bucket(api: Api) -> None:
    report = api.json("/api/v1/usage", range="7d", group_by="day")
    start, end = ns(report["range"]["start"]), ns(report["range"]["end"])
    assert end - start == 7 * DAY
    days = [iso(t) for t in range(start - start % DAY, end, DAY)]
    assert len(days) in (7, 8)
    assert [row["day"] for row in report["rows"]] == days
    expected = {key[0]: figures(rs) for key, rs in grouped(CURRENT, "day").items()}
    assert 2 <= len(expected) < len(days)  # some days are empty
    zero = figures([])
    assert {row["day"]: shown(row) for row in report["rows"]} == {d: expected.get(d, zero) for d in days}

    report = api.json("/api/v1/usage", range="7d", group_by="provider,day")
    expected_pairs = {key: figures(rs) for key, rs in grouped(CURRENT, "provider", "day").items()}
    got = {(row["provider"], row["day"]): shown(row) for row in report["rows"]}
    providers = {r.provider for r in CURRENT}
    assert got == {(p, d): expected_pairs.get((p, d), zero) for p in providers for d in days}


def test_usage_filters(api: Api) -> None:
    quoted = '"' + HYPERLINK.replace('"', '\\"') + '"'  # a value with a comma, in Grafana's doublequote form
    cases: list[tuple[dict[str, str], Callable[[Record], bool]]] = [
        ({"user": "alice"}, lambda r: r.user_id == "alice"),
        ({"provider": "groq"}, lambda r: r.provider == "groq"),
        ({"status": "error"}, lambda r: r.status == "error"),
        ({"status": "success", "provider": "anthropic"}, lambda r: r.status == "success" and r.provider == "anthropic"),
        ({"user": "bob", "model": "gpt-4o"}, lambda r: r.user_id == "bob" and r.request_model == "gpt-4o"),
        ({"feature": quoted}, lambda r: r.feature == HYPERLINK),
        ({"error_type": "rate_limit"}, lambda r: r.error_type == "rate_limit"),
    ]
    for params, keep in cases:
        matching = [r for r in CURRENT if keep(r)]
        assert matching, params
        report = api.json("/api/v1/usage", range="7d", **params)
        assert report["filters"] == {k: HYPERLINK if v == quoted else v for k, v in params.items()}
        assert shown(report["totals"]) == figures(matching), params
    report = api.json("/api/v1/usage", range="7d", user="alice", group_by="model")
    assert {row["model"]: row["requests"] for row in report["rows"]} == {
        key[0]: len(rs) for key, rs in grouped([r for r in CURRENT if r.user_id == "alice"], "model").items()
    }
    assert api.json("/api/v1/usage", range="7d", user="nobody")["totals"]["requests"] == 0


def test_usage_custom_range(api: Api) -> None:
    start, end = NOW - 30 * HOUR, NOW - 5 * HOUR
    inside = [r for r in CURRENT if start <= r.start_time_ns < end]
    assert 0 < len(inside) < len(CURRENT)
    report = api.json("/api/v1/usage", start=iso(start), end=iso(end))
    assert report["range"]["name"] == "custom"
    # iso() drops the sub-second part: no record is within a second of either bound.
    assert shown(report["totals"]) == figures(inside)


# --- the request log ---------------------------------------------------------------------------------------------


def test_requests_newest_first_and_filters(api: Api) -> None:
    page = api.json("/api/v1/requests", range="7d", limit=1000)
    assert [r["id"] for r in page["requests"]] == newest_first(CURRENT)
    assert page["next_cursor"] is None
    first = page["requests"][0]
    source = next(r for r in CURRENT if r.record_id == first["id"])
    assert (first["user"], first["model"], first["provider"], first["input_tokens"]) == (
        source.user_id,
        source.request_model,
        source.provider,
        source.input_tokens,
    )
    assert first["timestamp"].startswith(iso(source.start_time_ns)[:-1])

    assert [r["id"] for r in api.json("/api/v1/requests", limit=1000)["requests"]] == newest_first(CURRENT)
    assert [r["id"] for r in api.json("/api/v1/requests", range="30d", limit=1000)["requests"]] == newest_first(ALL)
    for status, keep in STATUS.items():
        expected = newest_first(r for r in CURRENT if keep(r))
        assert expected, status
        got = api.json("/api/v1/requests", range="7d", limit=1000, status=status)["requests"]
        assert [r["id"] for r in got] == expected, status
    got = api.json("/api/v1/requests", range="7d", limit=1000, provider="groq", status="4xx")["requests"]
    assert [r["id"] for r in got] == newest_first(r for r in CURRENT if r.provider == "groq" and http_class(r, 400))
    got = api.json("/api/v1/requests", range="7d", limit=1000, user="alice", operation="chat")["requests"]
    assert [r["id"] for r in got] == newest_first(r for r in CURRENT if r.user_id == "alice" and r.operation == "chat")


def walk(api: Api, **params: Any) -> list[str]:
    """Every id of the request log, a page of 3 at a time."""
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        page = api.json("/api/v1/requests", limit=3, **params, **({"cursor": cursor} if cursor else {}))
        assert len(page["requests"]) <= 3
        ids += [r["id"] for r in page["requests"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("the pages never end")


def test_requests_pagination(api: Api) -> None:
    ids = walk(api, range="7d")
    assert len(ids) == len(set(ids))
    assert ids == newest_first(CURRENT)
    ids = walk(api, range="30d", user="alice")
    assert ids == newest_first(r for r in ALL if r.user_id == "alice")
    assert walk(api, range="7d", status="5xx") == newest_first(r for r in CURRENT if http_class(r, 500))


def test_request_detail(api: Api) -> None:
    retried = next(r for r in CURRENT if r.events)
    detail = api.json(f"/api/v1/requests/{retried.record_id}")
    assert detail["id"] == retried.record_id
    assert detail["events"] == retried.events
    assert (detail["http_status"], detail["error_type"], detail["status"]) == (429, "rate_limit", "error")
    assert detail["customer_cost_nusd"] == retried.customer_cost_nusd
    captured = [r for r in CURRENT if r.input_messages]
    assert captured
    for r in captured:
        detail = api.json(f"/api/v1/requests/{r.record_id}")
        assert (detail["input_messages"], detail["output_messages"]) == (r.input_messages, r.output_messages)
    plain = next(r for r in CURRENT if not r.input_messages)
    assert api.json(f"/api/v1/requests/{plain.record_id}")["input_messages"] is None
    assert api.json(f"/api/v1/requests/{plain.record_id}")["units"] == {}
    assert api.json(f"/api/v1/requests/{6:016x}")["units"] == UNITS
    missing = api.get("/api/v1/requests/ffffffffffffffff")
    assert missing.status_code == 404
    assert "ffffffffffffffff" in missing.json()["error"]
    assert api.get("/api/v1/requests/00000000%000000000").status_code == 404


# --- errors, insights, health ------------------------------------------------------------------------------------


def test_errors(api: Api) -> None:
    report = api.json("/api/v1/errors", range="7d")
    failed = [r for r in CURRENT if r.status == "error"]
    assert report["total_requests"] == len(CURRENT)
    assert report["total_errors"] == len(failed) == len(FAILURES)
    assert report["error_rate"] == pytest.approx(len(failed) / len(CURRENT), abs=1e-6)
    assert {e["type"]: e["count"] for e in report["by_type"]} == dict(Counter(r.error_type for r in failed))
    assert [e["count"] for e in report["by_type"]] == sorted((e["count"] for e in report["by_type"]), reverse=True)
    for name, key in (("by_model", "model"), ("by_provider", "provider")):
        expected = {
            k[0]: (sum(r.status == "error" for r in rs), len(rs))
            for k, rs in grouped(CURRENT, key).items()
            if any(r.status == "error" for r in rs)
        }
        assert {e[key]: (e["errors"], e["requests"]) for e in report[name]} == expected, name
    groq = next(e for e in report["by_provider"] if e["provider"] == "groq")
    assert groq["error_rate"] == pytest.approx(3 / 5, abs=1e-6)
    alice = api.json("/api/v1/errors", range="7d", user="alice")
    assert alice["total_errors"] == sum(r.status == "error" and r.user_id == "alice" for r in CURRENT)


def test_insights(api: Api) -> None:
    report = api.json("/api/v1/insights", range="7d")
    total, previous = cost(CURRENT), cost(PREVIOUS)
    assert report["requests"] == len(CURRENT)
    assert report["total_cost_usd"] == pytest.approx(usd(total), abs=1e-9)
    assert report["unpriced_requests"] == sum(not r.priced for r in CURRENT)
    assert report["cost_by_operation"] == pytest.approx(
        {k[0]: usd(cost(rs)) for k, rs in grouped(CURRENT, "operation").items()}, abs=1e-9
    )
    trend = report["trend"]
    assert trend["previous_cost_usd"] == pytest.approx(usd(previous), abs=1e-9)
    assert trend["direction"] == ("up" if total > previous else "down")
    assert trend["percentage"] == pytest.approx((total - previous) * 100 / previous, abs=0.01)
    assert ns(trend["previous_period"]["end"]) == ns(report["range"]["start"])
    for name in ("model", "user", "feature", "api_key"):
        ranked = sorted(grouped(CURRENT, name).items(), key=lambda item: (-cost(item[1]), item[0][0]))[:5]
        drivers = report["top_cost_drivers"][name]
        assert [(d[name], d["requests"]) for d in drivers] == [(k[0], len(rs)) for k, rs in ranked], name
        assert [d["cost_usd"] for d in drivers] == pytest.approx([usd(cost(rs)) for _, rs in ranked], abs=1e-9)
    assert report["projected_30d_cost_usd"] == pytest.approx(total / 1e9 / 7 * 30, rel=1e-6)
    # The recommendations are the savings advice (tests/test_savings.py), none canned.
    assert report["recommendations"] == [item["advice"] for item in report["savings"]]
    assert all(item["estimated_saving_usd"] > 0 and item["evidence"] for item in report["savings"])

    # The default range is 30d: everything, and no earlier period.
    report = api.json("/api/v1/insights")
    assert report["requests"] == len(ALL)
    assert report["total_cost_usd"] == pytest.approx(usd(cost(ALL)), abs=1e-9)
    assert report["trend"]["previous_cost_usd"] == 0
    assert report["trend"]["direction"] == "up"


def test_health(api: Api) -> None:
    report = api.json("/api/v1/health", range="7d")
    providers = {p["provider"]: p for p in report["providers"]}
    assert set(providers) == {"openai", "anthropic", "groq"}
    for name, rs in grouped(CURRENT, "provider").items():
        entry = providers[name[0]]
        errors = sum(r.status == "error" for r in rs)
        assert (entry["requests"], entry["errors"]) == (len(rs), errors)
        assert entry["success_rate"] == pytest.approx(1 - errors / len(rs), abs=1e-6)
        assert entry["avg_latency_ms"] == pytest.approx(sum(r.duration_s for r in rs) * 1000 / len(rs), abs=1e-3)
    # The default bounds: 10 errors critical, 5 warning, else healthy from 95% success, else degraded.
    assert providers["openai"]["errors"] == 0 and providers["openai"]["health"] == "healthy"
    assert providers["groq"]["errors"] == 3 and providers["groq"]["health"] == "degraded"
    assert providers["anthropic"]["errors"] == 1 and providers["anthropic"]["health"] == "degraded"
    assert providers["groq"]["errors_by_type"] == {"rate_limit": 2, "server_error": 1}
    last = max((r for r in CURRENT if r.provider == "groq" and r.status == "error"), key=lambda r: r.start_time_ns)
    assert providers["groq"]["last_error"]["id"] == last.record_id
    assert (providers["groq"]["last_error"]["type"], providers["groq"]["last_error"]["message"]) == (
        last.error_type,
        last.error_message,
    )
    newest = max((r for r in CURRENT if r.provider == "openai"), key=lambda r: r.start_time_ns)
    assert providers["openai"]["last_used"].startswith(iso(newest.start_time_ns)[:-1])
    assert providers["openai"]["last_error"] is None
    groq = [r for r in CURRENT if r.provider == "groq"]
    newest_ok = max((r for r in groq if r.status == "success"), key=lambda r: r.start_time_ns)
    assert providers["groq"]["last_used"].startswith(iso(newest_ok.start_time_ns)[:-1])
    newest_any = max(groq, key=lambda r: r.start_time_ns)
    assert newest_any.status == "error" and newest_any is not newest_ok  # the last request failed: not a use
    assert providers["groq"]["last_request"].startswith(iso(newest_any.start_time_ns)[:-1])
    models = {(m["provider"], m["model"]): m["health"] for m in report["models"]}
    assert models == {
        ("openai", "gpt-4o-mini"): "healthy",
        ("openai", "gpt-4o"): "healthy",
        ("anthropic", "claude-haiku-4-5"): "degraded",
        ("groq", "llama-3.3"): "degraded",
    }
    assert report["thresholds"] == {"critical_errors": 10, "warning_errors": 5, "healthy_success_rate": 0.95}
    # The default range is the last 24 hours.
    recent = [r for r in CURRENT if r.start_time_ns > NOW - 23 * HOUR]
    report = api.json("/api/v1/health")
    assert sum(p["requests"] for p in report["providers"]) == len(recent)


# --- export ------------------------------------------------------------------------------------------------------


def test_export(api: Api) -> None:
    response = api.get("/api/v1/export", range="7d", format="csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(row["id"] for row in rows) == sorted(r.record_id for r in CURRENT)
    assert "input_messages" not in rows[0] and "output_messages" not in rows[0]
    by_id = {row["id"]: row for row in rows}
    assert by_id[f"{10:016x}"]["feature"] == "'" + HYPERLINK  # shown as text in a spreadsheet, never run
    assert {r.record_id: r.feature or "" for r in CURRENT if r.feature != HYPERLINK} == {
        i: row["feature"] for i, row in by_id.items() if i != f"{10:016x}"
    }
    assert by_id[f"{3:016x}"]["http_status"] == "429"
    assert json.loads(by_id[f"{3:016x}"]["events"]) == CURRENT[3].events
    assert json.loads(by_id[f"{6:016x}"]["units"]) == UNITS and json.loads(by_id[f"{3:016x}"]["units"]) == {}

    rows = list(csv.DictReader(io.StringIO(api.get("/api/v1/export", range="7d", payloads="true").text)))
    assert {row["id"]: row["input_messages"] for row in rows if row["input_messages"]} == {
        r.record_id: r.input_messages for r in CURRENT if r.input_messages
    }

    response = api.get("/api/v1/export", range="7d", format="json")
    assert response.headers["content-type"].startswith("application/json")
    items = response.json()
    assert isinstance(items, list) and len(items) == len(CURRENT)
    assert all("input_messages" not in item for item in items)
    by_id = {item["id"]: item for item in items}
    assert by_id[f"{10:016x}"]["feature"] == HYPERLINK  # JSON keeps the text as it is
    assert by_id[f"{3:016x}"]["customer_cost_nusd"] == CURRENT[3].customer_cost_nusd
    assert by_id[f"{6:016x}"]["units"] == UNITS

    response = api.get("/api/v1/export", format="jsonl", payloads="true")  # default range: 30d
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert sorted(item["id"] for item in lines) == sorted(r.record_id for r in ALL)
    assert {item["id"]: item["output_messages"] for item in lines if item["output_messages"]} == {
        r.record_id: r.output_messages for r in ALL if r.output_messages
    }
    assert {item["id"]: item["units"] for item in lines if item["units"]} == {f"{6:016x}": UNITS}

    for params, keep in (
        ({"status": "5xx"}, STATUS["5xx"]),
        ({"status": "error", "provider": "groq"}, lambda r: r.status == "error" and r.provider == "groq"),
        ({"user": "bob"}, lambda r: r.user_id == "bob"),
    ):
        items = api.json("/api/v1/export", range="7d", format="json", **params)
        assert sorted(item["id"] for item in items) == sorted(r.record_id for r in CURRENT if keep(r)), params
    assert api.json("/api/v1/export", range="7d", format="json", user="nobody") == []
    empty = api.get("/api/v1/export", range="7d", user="nobody").text
    assert len(empty.splitlines()) == 1 and empty.startswith("id,")  # the header only


def test_export_refuses_too_many_combinations_before_answering(api: Api) -> None:
    """Found by schemathesis: the bound on value combinations was checked as the first page was read, after the
    200 had gone out, so the client saw a broken stream instead of a 400 saying what to change."""
    many = {"provider": "a,b,c,d", "operation": "a,b,c,d,e", "model": "a,b,c,d", "user": "a,b,c,d"}
    for fmt in ("csv", "json", "jsonl"):
        response = api.get("/api/v1/export", format=fmt, **many)
        assert response.status_code == 400, (fmt, response.text[:200])
        assert "320 combinations" in response.json()["error"]


# --- prices ------------------------------------------------------------------------------------------------------


def test_price(api: Api) -> None:
    price = api.json("/api/v1/price", model="gpt-4o-mini", provider="openai")
    assert price["model"] == "gpt-4o-mini" and price["provider"] == "openai"
    assert Decimal(price["input_per_mtok_usd"]) > 0
    assert Decimal(price["output_per_mtok_usd"]) > Decimal(price["input_per_mtok_usd"])
    assert api.json("/api/v1/price", model="gpt-4o-mini", at="2025-06-01T00:00:00Z")["model"] == "gpt-4o-mini"
    missing = api.get("/api/v1/price", model="no-such-model-xyz")
    assert missing.status_code == 404
    assert "no-such-model-xyz" in missing.json()["error"]


# --- bad parameters ----------------------------------------------------------------------------------------------

BAD = [  # path, parameters, a word the message must hold
    ("/api/v1/usage", {"range": "1y"}, "range"),
    ("/api/v1/usage", {"start": "yesterday"}, "start"),
    ("/api/v1/usage", {"start": "2026-01-05", "end": "2026-01-01"}, "end"),
    ("/api/v1/usage", {"range": "7d", "start": "2026-01-01"}, "range=custom"),
    ("/api/v1/usage", {"range": "custom"}, "start"),
    ("/api/v1/usage", {"group_by": "color"}, "group_by"),
    ("/api/v1/usage", {"group_by": "model,model"}, "group_by"),
    ("/api/v1/usage", {"group_by": "hour,day"}, "group_by"),
    ("/api/v1/usage", {"status": "teapot"}, "status"),
    ("/api/v1/usage", {"status": "4xx"}, "status"),  # the request log's only
    ("/api/v1/errors", {"status": "teapot"}, "status"),
    ("/api/v1/requests", {"status": "teapot"}, "status"),
    ("/api/v1/requests", {"limit": "0"}, "limit"),
    ("/api/v1/requests", {"limit": "100000"}, "limit"),
    ("/api/v1/requests", {"limit": "ten"}, "limit"),
    ("/api/v1/requests", {"cursor": "garbage"}, "cursor"),
    ("/api/v1/requests", {"cursor": "WzEsMiwzXQ"}, "cursor"),  # base64 JSON of the wrong shape
    ("/api/v1/export", {"format": "xls"}, "format"),
    ("/api/v1/export", {"payloads": "maybe"}, "payloads"),
    ("/api/v1/insights", {"range": "forever"}, "range"),
    ("/api/v1/health", {"end": "2026-13-45"}, "end"),
    ("/api/v1/price", {}, "model"),
    ("/api/v1/price", {"model": "gpt-4o-mini", "at": "noon"}, "at"),
    # Times a 64-bit ns column cannot hold, and a grouping of far too many buckets.
    ("/api/v1/usage", {"start": "0001-01-01"}, "start"),
    ("/api/v1/usage", {"start": "2026-01-01", "end": "9999-12-31"}, "end"),
    ("/api/v1/requests", {"start": "1600-01-01T00:00:00+14:00"}, "start"),
    ("/api/v1/price", {"model": "gpt-4o-mini", "at": "9999-12-31T23:59:59-14:00"}, "at"),
    ("/api/v1/usage", {"start": "2000-01-01", "group_by": "hour"}, "group_by"),
    # NUL characters, which PostgreSQL refuses in text.
    ("/api/v1/usage", {"user": "al\x00ice"}, "user"),
    ("/api/v1/requests", {"model": "\x00", "provider": "openai"}, "model"),
    ("/api/v1/export", {"feature": "\x00", "format": "json"}, "feature"),
    ("/api/v1/errors", {"error_type": "\x00"}, "error_type"),
]


def test_bad_parameters(api: Api) -> None:
    for path, params, word in BAD:
        response = api.get(path, **params)
        assert response.status_code == 400, (path, params, response.status_code, response.text)
        assert response.headers["content-type"] == "application/json"
        assert word in response.json()["error"], (path, params, response.json())
    # A day's worth of hours and ten years of days are fine.
    assert len(api.json("/api/v1/usage", range="24h", group_by="hour")["rows"]) in (24, 25)
    assert len(api.json("/api/v1/usage", start="2020-01-01", end="2029-12-31", group_by="day")["rows"]) == 3653


# --- API tokens --------------------------------------------------------------------------------------------------

ADMIN = "admin-token-0123456789"
ALICE = "alice-token-0123456789"
BOB = "bob-token-abcdefghijkl"
TOKENS = [
    {"name": "ops", "role": "admin", "token": ADMIN},
    {"name": "alice", "role": "member", "user": "alice", "token": ALICE},
    {"name": "bob", "role": "member", "user": "bob", "token_sha256": hashlib.sha256(BOB.encode()).hexdigest()},
]


def test_tokens_and_roles_on_every_address(tmp_path: Path) -> None:
    """With api.tokens (and ingest tokens, for OTLP on the same port), serve listens on every address, and every
    /api/v1 call needs a token; a member sees only their own requests."""
    url = f"sqlite:///{tmp_path}/audit.db"
    write(url, ALL)
    receiver = Receiver(tmp_path, url, api={"tokens": TOKENS})
    ingest = [{"name": "collector", "token": "ingest-token-0123456789abcdef"}]
    receiver.settings["receiver"] = {"http": f"0.0.0.0:{receiver.http_port}", "ingest_tokens": ingest}
    receiver.start()
    try:
        api = Api(receiver.http_url, url, receiver.log)
        assert "0.0.0.0" in (tmp_path / f"llmtally-{receiver.http_port}.yaml").read_text()
        for path in ("/readyz", "/healthz", "/metrics"):
            assert httpx.get(f"{api.url}{path}", timeout=10).status_code == 200, path

        paths = ("/api/v1/usage", "/api/v1/requests", "/api/v1/export", "/api/v1/requests/0000000000000000")
        for path in (*paths, "/api/v1/openapi.json"):
            response = api.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert "token" in response.json()["error"]
        assert api.get("/api/v1/usage", token="wrong-token-0123456789").status_code == 401
        assert api.get("/api/v1/usage", token=ADMIN[:-1]).status_code == 401
        basic = httpx.get(f"{api.url}/api/v1/usage", auth=("ops", ADMIN), timeout=10)
        assert basic.status_code == 401

        alices = [r for r in CURRENT if r.user_id == "alice"]
        bobs = [r for r in CURRENT if r.user_id == "bob"]
        assert shown(api.json("/api/v1/usage", ALICE, range="7d")["totals"]) == figures(alices)
        assert shown(api.json("/api/v1/usage", ALICE, range="7d", user="alice")["totals"]) == figures(alices)
        report = api.json("/api/v1/usage", ALICE, range="7d", group_by="user")
        assert [row["user"] for row in report["rows"]] == ["alice"]
        assert shown(api.json("/api/v1/usage", BOB, range="7d")["totals"]) == figures(bobs)
        assert shown(api.json("/api/v1/usage", ADMIN, range="7d")["totals"]) == figures(CURRENT)

        page = api.json("/api/v1/requests", ALICE, range="7d", limit=1000)
        assert [r["id"] for r in page["requests"]] == newest_first(alices)
        assert {r["user"] for r in page["requests"]} == {"alice"}
        assert len(api.json("/api/v1/requests", ADMIN, range="7d", limit=1000)["requests"]) == len(CURRENT)
        items = api.json("/api/v1/export", ALICE, range="30d", format="json")
        assert sorted(i["id"] for i in items) == sorted(r.record_id for r in ALL if r.user_id == "alice")
        assert api.json("/api/v1/errors", ALICE, range="7d")["total_requests"] == len(alices)
        assert api.json("/api/v1/insights", ALICE, range="7d")["total_cost_usd"] == pytest.approx(usd(cost(alices)))
        assert sum(p["requests"] for p in api.json("/api/v1/health", ALICE, range="7d")["providers"]) == len(alices)

        for path in ("/api/v1/usage", "/api/v1/requests", "/api/v1/errors", "/api/v1/export"):
            refused = api.get(path, ALICE, user="bob")
            assert refused.status_code == 403, path
            assert "alice" in refused.json()["error"]
        bob_id, alice_id = bobs[0].record_id, alices[0].record_id
        assert api.get(f"/api/v1/requests/{bob_id}", ALICE).status_code == 404
        assert api.json(f"/api/v1/requests/{alice_id}", ALICE)["user"] == "alice"
        assert api.json(f"/api/v1/requests/{bob_id}", BOB)["user"] == "bob"
        assert api.json(f"/api/v1/requests/{bob_id}", ADMIN)["user"] == "bob"
        assert api.json("/api/v1/price", ALICE, model="gpt-4o-mini")["model"] == "gpt-4o-mini"
        assert api.json("/api/v1/usage", ADMIN, range="7d", user="bob")["totals"]["requests"] == len(bobs)
    finally:
        assert receiver.stop() == 0


def test_no_tokens_only_on_loopback(tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("llmtally")),
        "serve",
        "--store",
        f"sqlite:///{tmp_path}/audit.db",
        "--http",
        f"0.0.0.0:{free_port()}",
        "--otlp-grpc",
        f"127.0.0.1:{free_port()}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMTALLY_", "OTEL_"))}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "api.tokens" in done.stderr


# --- schemathesis ------------------------------------------------------------------------------------------------


def fuzz(base_url: str, workdir: Path, max_examples: int = 30) -> tuple[int, str, list[ET.Element]]:
    """schemathesis over the OpenAPI document: exit code, output and the JUnit test cases (one per operation)."""
    junit = workdir / "junit.xml"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base_url}/api/v1/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(max_examples),
        "--exclude-path",  # the live feed never ends: read by real clients in test_stream.py
        "/api/v1/requests/stream",
        "--request-timeout",
        "20",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    cases = list(ET.parse(junit).getroot().iter("testcase")) if junit.exists() else []
    return done.returncode, done.stdout + done.stderr, cases


def test_schemathesis_finds_no_server_error(api: Api, tmp_path: Path) -> None:
    code, output, cases = fuzz(api.url, tmp_path)
    assert code == 0, output[-6000:]
    assert len(cases) == 14, output[-3000:]  # every operation was tested (but the live feed)
    assert all(case.find("failure") is None and case.find("error") is None for case in cases), output[-6000:]
    assert "Traceback" not in api.log.read_text()
