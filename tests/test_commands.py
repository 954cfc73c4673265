"""The `llmtally` analytics and maintenance commands, in-process, against SQLite and a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import genai_prices
import pytest

from llmtally.cli import main
from llmtally.exporter.maintenance.retention import Scheduler
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.price import Pricer
from llmtally.exporter.store import Store, open_store
from test_store import make

HOUR = 3_600_000_000_000
DAY = 24 * HOUR
NOW = time.time_ns()
TODAY = NOW - NOW % DAY


def recent(i: int, ago_ns: int, **fields: Any) -> Record:
    """Record i, started `ago_ns` before now."""
    return make(i, start_ns=NOW - ago_ns, **fields)


def sample() -> list[Record]:
    """Records over the last 40 days: two users, three providers, errors with HTTP codes, captured payloads."""
    records = []
    for i in range(1, 121):
        fields: dict[str, Any] = {"user_id": "alice" if i % 3 else "bob"}
        if i % 10 == 0:
            fields |= {"status": "error", "error_type": "rate_limit", "http_status": 429}
        elif i % 10 == 5:
            fields |= {"status": "error", "error_type": "server_error", "http_status": 500}
        else:
            fields["http_status"] = 200
        if i % 4 == 0:
            fields |= {"input_messages": f'[{{"role":"user","content":"question {i}"}}]', "output_messages": "[]"}
        records.append(recent(i, (i * 8 * HOUR) + 60_000_000_000, **fields))
    return records


@pytest.fixture
def stored(store_url: str) -> Iterator[tuple[str, list[Record]]]:
    records = sample()
    with open_store(store_url) as store:
        assert len(store.write(records)) == len(records)
    yield store_url, records


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def within(records: Sequence[Record], days: int) -> list[Record]:
    return [r for r in records if r.start_time_ns >= NOW - days * DAY]


def test_usage_by_model_and_user(capsys, stored):
    url, records = stored
    report = run_json(capsys, "usage", "--store", url, "--range", "30d", "--by", "model,user")
    want: dict[tuple[str, str], list[int]] = {}
    for r in within(records, 30):
        sums = want.setdefault((r.request_model, r.user_id or ""), [0, 0, 0, 0])
        sums[0] += 1
        sums[1] += r.input_tokens
        sums[2] += r.customer_cost_nusd or 0
        sums[3] += r.status == "error"
    got = {
        (row["model"], row["user"]): [row["requests"], row["input_tokens"], row["customer_cost_nusd"], row["errors"]]
        for row in report["rows"]
    }
    assert got == want
    assert report["totals"]["requests"] == len(within(records, 30))


def test_usage_by_day_fills_empty_days_and_filters(capsys, stored):
    url, records = stored
    report = run_json(capsys, "usage", "--store", url, "--range", "7d", "--by", "day", "--user", "bob")
    days = [row["day"] for row in report["rows"]]
    assert len(days) == 8 and len(set(days)) == 8  # a partial first day, six whole days, today
    bob = [r for r in within(records, 7) if r.user_id == "bob"]
    assert sum(row["requests"] for row in report["rows"]) == len(bob) == report["totals"]["requests"]
    assert any(row["requests"] == 0 and row["customer_cost_usd"] == 0 for row in report["rows"]) or len(bob) >= 8
    code, out, _ = run(capsys, "usage", "--store", url, "--range", "7d", "--by", "day")
    assert code == 0 and "total" in out and f"{len(within(records, 7)):,}" in out


def test_requests_page_by_page_and_details(capsys, stored):
    url, records = stored
    want = {r.record_id for r in within(records, 30) if r.http_status == 429}
    seen: list[str] = []
    cursor: list[str] = []
    while True:
        page = run_json(
            capsys, "requests", "--store", url, "--range", "30d", "--status", "4xx", "--limit", "2", *cursor
        )
        seen += [row["id"] for row in page["requests"]]
        times = [row["timestamp"] for row in page["requests"]]
        assert times == sorted(times, reverse=True)
        if not page["next_cursor"]:
            break
        cursor = ["--cursor", page["next_cursor"]]
    assert sorted(seen) == sorted(want) and len(seen) == len(set(seen))
    captured = next(r for r in records if r.input_messages)
    detail = run_json(capsys, "requests", "--store", url, captured.record_id)
    assert (
        detail["input_messages"] == captured.input_messages
        and detail["customer_cost_nusd"] == captured.customer_cost_nusd
    )
    code, out, _ = run(capsys, "requests", "--store", url, "--limit", "3")
    assert code == 0 and "more: llmtally requests --cursor" in out
    assert run(capsys, "requests", "--store", url, "ffffffffffffffff")[0] == 1


def test_errors_insights_and_health(capsys, stored):
    url, records = stored
    errors = run_json(capsys, "errors", "--store", url, "--range", "30d")
    month = within(records, 30)
    failed = [r for r in month if r.status == "error"]
    assert errors["total_errors"] == len(failed) and errors["total_requests"] == len(month)
    assert {e["type"]: e["count"] for e in errors["by_type"]} == {
        t: sum(r.error_type == t for r in failed) for t in ("rate_limit", "server_error")
    }
    insights = run_json(capsys, "insights", "--store", url, "--range", "7d")
    week = within(records, 7)
    before = [r for r in records if NOW - 14 * DAY <= r.start_time_ns < NOW - 7 * DAY]
    assert insights["total_cost_usd"] == pytest.approx(sum(r.customer_cost_nusd or 0 for r in week) / 1e9)
    assert insights["trend"]["previous_cost_usd"] == pytest.approx(sum(r.customer_cost_nusd or 0 for r in before) / 1e9)
    assert insights["projected_30d_cost_usd"] == pytest.approx(insights["total_cost_usd"] / 7 * 30, rel=1e-6)
    top = insights["top_cost_drivers"]["model"]
    assert [m["cost_usd"] for m in top] == sorted((m["cost_usd"] for m in top), reverse=True)
    health = run_json(capsys, "health", "--store", url, "--range", "30d")
    for entry in health["providers"]:
        mine = [r for r in month if r.provider == entry["provider"]]
        assert entry["requests"] == len(mine)
        assert entry["success_rate"] == pytest.approx(sum(r.status == "success" for r in mine) / len(mine), abs=1e-6)
        assert entry["health"] in ("healthy", "degraded", "warning", "critical")


def test_export_csv_is_complete_and_formula_safe(capsys, store_url, tmp_path):
    records = [recent(i, i * HOUR, feature='=HYPERLINK("http://x")' if i == 3 else "plain") for i in range(1, 40)]
    with open_store(store_url) as store:
        store.write(records)
    out = tmp_path / "out.csv"
    code, _, err = run(capsys, "export", "--store", store_url, "--format", "csv", "-o", str(out))
    assert code == 0 and "exported 39 requests" in err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sorted(row["id"] for row in rows) == sorted(r.record_id for r in records)
    assert [row["feature"] for row in rows if row["id"] == records[2].record_id] == ['\'=HYPERLINK("http://x")']
    code, lines, _ = run(capsys, "export", "--store", store_url, "--format", "jsonl")
    assert code == 0 and len([json.loads(line) for line in lines.splitlines()]) == 39


def test_cleanup_dry_run_then_confirmed(capsys, stored):
    url, records = stored
    old = [r for r in records if r.start_time_ns < TODAY - 20 * DAY]
    assert old
    plan = run_json(capsys, "cleanup", "--store", url, "--days", "20", "--dry-run")
    assert plan["records"] == len(old) and plan["dry_run"] is True
    with open_store(url) as store:
        assert store.count() == len(records)  # a dry run changes nothing
    code, _, err = run(capsys, "cleanup", "--store", url, "--days", "20")  # stdin is not a terminal: no confirmation
    assert code == 1 and "--yes" in err
    done = run_json(capsys, "cleanup", "--store", url, "--days", "20", "--yes")
    assert done["done"] == len(old)
    with open_store(url) as store:
        assert store.count() == len(records) - len(old)
        totals = store.usage([], 0, NOW + DAY)[0]
        assert totals["requests"] == len(records) - len(old)  # the rollups went with the records


def test_cleanup_payloads_only_keeps_costs(capsys, stored):
    url, records = stored
    with open_store(url) as store:
        before = store.usage(["user_id"], 0, NOW + DAY)
    run_json(capsys, "cleanup", "--store", url, "--days", "0", "--payloads-only", "--yes")
    with open_store(url) as store:
        assert store.usage(["user_id"], 0, NOW + DAY) == before
        for r in records:
            got = store.get(r.record_id)
            assert got is not None
            old = r.start_time_ns < TODAY
            assert got.input_messages == (None if old else r.input_messages)


def test_reprice_after_an_override_keeps_the_old_price(capsys, store_url, tmp_path):
    records = [
        recent(
            i,
            i * HOUR,
            provider="selfhosted",
            request_model="my-llama-3",
            response_model="my-llama-3",
            provider_cost_nusd=None,
            customer_cost_nusd=None,
            priced=False,
            price_source="unpriced",
            input_tokens=1000,
            output_tokens=500,
            total_tokens=1500,
            cached_tokens=0,
            cache_write_tokens=0,
            reasoning_tokens=0,
            usage_source="provider",
            status="success",
            error_type=None,
        )
        for i in range(1, 6)
    ]
    with open_store(store_url) as store:
        store.write(records)
    config = tmp_path / "llmtally.yaml"
    config.write_text(
        f"store: {store_url}\npricing:\n  overrides:\n    - model: my-llama-*\n      input_per_mtok: 1\n"
        "      output_per_mtok: 2\n"
    )
    since = (TODAY - 2 * DAY) // 10**9
    result = run_json(
        capsys, "reprice", "--config", str(config), "--since", time.strftime("%Y-%m-%d", time.gmtime(since))
    )
    assert result["changed"] == 5
    with open_store(store_url) as store:
        for r in records:
            got = store.get(r.record_id)
            assert got is not None and got.priced and got.provider_cost_nusd == 1000 * 1000 + 500 * 2000
            assert got.events[-1]["type"] == "repriced" and got.events[-1]["previous_price_source"] == "unpriced"
        assert store.usage([], 0, NOW + DAY)[0]["provider_cost_nusd"] == 5 * 2_000_000
    again = run_json(
        capsys, "reprice", "--config", str(config), "--since", time.strftime("%Y-%m-%d", time.gmtime(since))
    )
    assert again["changed"] == 0  # same prices: nothing changes twice


def test_price_matches_genai_prices(capsys):
    data = run_json(capsys, "price", "gpt-4o-mini", "--provider", "openai")
    want = genai_prices.calc_price(genai_prices.Usage(input_tokens=1_000_000), "gpt-4o-mini", provider_id="openai")
    assert float(data["input_per_mtok_usd"]) == pytest.approx(float(want.input_price))
    code, _, err = run(capsys, "price", "no-such-model-anywhere")
    assert code == 1 and "pricing.overrides" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["usage", "--range", "custom"], "needs start"),
        (["usage", "--start", "yesterday"], "ISO 8601"),
        (["usage", "--start", "2026-02-01", "--end", "2026-01-01"], "must be after"),
        (["usage", "--by", "colour"], "group_by"),
        (["requests", "--cursor", "not-a-cursor"], "cursor"),
        (["cleanup", "--days", "-1", "--yes"], "negative"),
    ],
)
def test_bad_parameters_exit_2_with_a_clear_message(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *argv, "--store", f"sqlite:///{tmp_path}/a.db")
    assert code == 2 and message in err


def test_serve_retention_schedule(store_url):
    records = sample()
    with open_store(store_url) as store:
        store.write(records)
        deleted, cleared = Scheduler(store, days=10, payload_days=1, interval_s=3600).run_once()
        kept = [r for r in records if r.start_time_ns >= TODAY - 10 * DAY]
        assert deleted == len(records) - len(kept) and store.count() == len(kept)
        old_payloads = [r for r in kept if r.input_messages and r.start_time_ns < TODAY - DAY]
        assert cleared == len(old_payloads)
        assert Scheduler(store, days=10, payload_days=1, interval_s=3600).run_once() == (0, 0)


def test_repricer_only_changes_what_changed():
    from llmtally.exporter.maintenance.reprice import repricer

    record = make(1, start_ns=NOW, provider="openai", request_model="gpt-4o-mini", response_model="gpt-4o-mini")
    reprice = repricer(Pricer())
    assert reprice(record) is True and record.events[-1]["type"] == "repriced"
    assert reprice(record) is False


def _store(url: str) -> Store:
    return open_store(url)


def test_config_sections_for_api_and_retention(tmp_path: Path):
    from llmtally.exporter.config import ConfigError, load

    path = tmp_path / "llmtally.yaml"
    path.write_text("api:\n  tokens:\n    - {role: admin, token: 0123456789abcdef0}\nretention:\n  days: 30\n")
    config = load(str(path), env={})
    assert config.retention_days == 30 and config.api_tokens[0]["role"] == "admin"
    path.write_text("retention:\n  weeks: 3\n")
    with pytest.raises(ConfigError, match=r"retention\.weeks"):
        load(str(path), env={})
