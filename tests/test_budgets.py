"""Budgets and credits: configuration, calendar periods, spend from the store (SQLite and PostgreSQL), the
Prometheus families, `/api/v1/budgets` with its access rules, and `llmtally budgets`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from llmtally.exporter.budgets.config import DEFAULT_THRESHOLDS, BudgetSettings, Credit
from llmtally.exporter.budgets.metrics import BudgetMetrics
from llmtally.exporter.budgets.periods import bounds, ns
from llmtally.exporter.budgets.status import budget_state, budget_status, credit_state
from llmtally.exporter.config import ConfigError, load
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.store import Store, StoreUnavailable, open_store
from receiver import Receiver, metric_sum

EXAMPLE = Path(__file__).resolve().parent.parent / "llmtally.example.yaml"
LLMTALLY = str(Path(sys.executable).with_name("llmtally"))
NOW = datetime(2026, 12, 10, 15, 30, 0, tzinfo=UTC)  # a Thursday; the month started 9.6458 days before


def record(n: int, when: datetime, cost: int, **fields: Any) -> Record:
    """A priced record: `cost` nano-USD of customer cost, 80 % of it provider cost."""
    t = ns(when)
    values: dict[str, Any] = {
        "record_id": f"b{n:015x}",
        "start_time_ns": t,
        "end_time_ns": t + 1_000_000_000,
        "provider": "openai",
        "operation": "chat",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 10,
        "total_tokens": 110,
        "usage_source": "provider",
        "customer_cost_nusd": cost,
        "provider_cost_nusd": cost * 8 // 10,
        "priced": True,
        "duration_s": 0.5,
    }
    values.update(fields)
    return Record(**values)


def settings(*budgets: dict[str, Any], credits: list[dict[str, Any]] | None = None) -> BudgetSettings:
    return BudgetSettings.from_sections(list(budgets), credits)


# --- configuration -----------------------------------------------------------------------------------------------


def test_the_documented_example_has_the_default_thresholds_and_parses():
    parsed = BudgetSettings.from_config(load(str(EXAMPLE), env={}))
    assert parsed.thresholds == DEFAULT_THRESHOLDS
    assert parsed.budgets == () and parsed.credits == ()
    assert (DEFAULT_THRESHOLDS["spend_daily_medium_usd"], DEFAULT_THRESHOLDS["spend_daily_critical_usd"]) == (10, 50)


def test_a_full_budget_entry_is_read_exactly():
    parsed = settings(
        {
            "name": "research-openai",
            "period": "weekly",
            "amount_usd": 0.1,  # 0.1 is not exact in binary: nano-USD must be 100_000_000 exactly
            "basis": "provider",
            "scope": {"feature": "signal_parsing", "provider": "openai", "model": "gpt-4o-mini"},
            "mode": "hard",
            "team": "research",
            "timezone": "Europe/Paris",
        },
        credits=[{"provider": "openai", "balance_usd": "100.25", "since": "2026-11-01"}],
    )
    (budget,) = parsed.budgets
    assert budget.amount_nusd == 100_000_000
    assert (budget.period, budget.basis, budget.mode, budget.team, budget.timezone) == (
        "weekly",
        "provider",
        "hard",
        "research",
        "Europe/Paris",
    )
    assert budget.filters() == {"feature": "signal_parsing", "provider": "openai", "request_model": "gpt-4o-mini"}
    assert parsed.credits == (Credit("openai", 100_250_000_000, ns(datetime(2026, 11, 1, tzinfo=UTC))),)
    defaults = settings({"name": "b", "period": "daily", "amount_usd": 5}).budgets[0]
    assert (defaults.basis, defaults.mode, defaults.team, defaults.timezone, dict(defaults.scope)) == (
        "customer",
        "soft",
        "",
        "UTC",
        {},
    )


@pytest.mark.parametrize(
    ("budgets", "credits", "alerts", "key"),
    [
        (
            [{"name": "a", "period": "daily", "amount_usd": 1, "limit": 2}],
            None,
            None,
            r"budgets\[0\]: unknown key",
        ),
        ([{"name": "a", "period": "daily", "amount_usd": -1}], None, None, r"budgets\[0\] \(a\)\.amount_usd"),
        ([{"name": "a", "period": "daily", "amount_usd": 0}], None, None, r"amount_usd must be greater than zero"),
        ([{"name": "a", "period": "yearly", "amount_usd": 1}], None, None, r"\.period must be one of"),
        ([{"name": "a", "period": "daily", "amount_usd": 1, "scope": {"team": "x"}}], None, None, r"\.scope: unknown"),
        ([{"name": "a", "period": "daily", "amount_usd": 1, "mode": "strict"}], None, None, r"\.mode must be one of"),
        ([{"name": "a", "period": "daily", "amount_usd": 1, "basis": "list"}], None, None, r"\.basis must be one of"),
        ([{"name": "a", "period": "daily", "amount_usd": 1, "timezone": "Mars/Base"}], None, None, r"\.timezone"),
        ([{"name": "a b", "period": "daily", "amount_usd": 1}], None, None, r"budgets\[0\]\.name"),
        ([{"period": "daily", "amount_usd": 1}], None, None, r"budgets\[0\]\.name is required"),
        ([{"name": "a", "period": "daily", "amount_usd": 1}] * 2, None, None, r"budgets\[1\]\.name 'a' is used"),
        ({"name": "a"}, None, None, r"budgets must be a list"),
        (None, [{"provider": "openai", "balance_usd": -5, "since": "2026-01-01"}], None, r"credits\[0\]\.balance_usd"),
        (None, [{"provider": "openai", "balance_usd": 5, "since": "soon"}], None, r"credits\[0\]\.since"),
        (None, [{"provider": "openai", "balance_usd": 5}], None, r"credits\[0\]\.since is required"),
        (None, None, {"thresholds": {"spend_daily_huge_usd": 1}}, r"alerts\.thresholds: unknown key"),
        (None, None, {"thresholds": {"error_rate_high": -0.1}}, r"alerts\.thresholds\.error_rate_high"),
        (None, None, {"thresholds": {"error_rate_high": "high"}}, r"alerts\.thresholds\.error_rate_high"),
        (None, None, {"rules": {}}, r"alerts: unknown key"),
    ],
)
def test_bad_entries_are_refused_naming_the_key(budgets, credits, alerts, key):
    with pytest.raises(ConfigError, match=key):
        BudgetSettings.from_sections(budgets, credits, alerts)


def test_thresholds_override_the_defaults_one_by_one():
    parsed = BudgetSettings.from_sections(None, None, {"thresholds": {"spend_daily_medium_usd": 2.5}})
    assert parsed.thresholds == {**DEFAULT_THRESHOLDS, "spend_daily_medium_usd": 2.5}


def test_serve_refuses_a_bad_budget_at_start_naming_the_key(tmp_path: Path):
    path = tmp_path / "llmtally.yaml"
    path.write_text(yaml.safe_dump({"budgets": [{"name": "x", "period": "daily", "amount_usd": 1, "scope": {"u": 1}}]}))
    run = subprocess.run([LLMTALLY, "serve", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "budgets[0] (x).scope: unknown key(s) u" in run.stderr


# --- periods and status ------------------------------------------------------------------------------------------


def test_calendar_periods():
    utc = ZoneInfo("UTC")
    assert bounds("daily", NOW, utc) == (datetime(2026, 12, 10, tzinfo=utc), datetime(2026, 12, 11, tzinfo=utc))
    assert bounds("weekly", NOW, utc) == (datetime(2026, 12, 7, tzinfo=utc), datetime(2026, 12, 14, tzinfo=utc))
    assert bounds("monthly", NOW, utc) == (datetime(2026, 12, 1, tzinfo=utc), datetime(2027, 1, 1, tzinfo=utc))
    monday = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    assert bounds("weekly", monday, utc)[0] == monday
    assert bounds("weekly", monday - timedelta(microseconds=1), utc)[1] == monday
    # In Paris it is already the 11th at 23:30 UTC; the day before daylight saving time starts has 23 hours.
    paris = ZoneInfo("Europe/Paris")
    start, _ = bounds("daily", datetime(2026, 12, 10, 23, 30, tzinfo=UTC), paris)
    assert start.astimezone(UTC) == datetime(2026, 12, 10, 23, 0, tzinfo=UTC)
    spring = bounds("daily", datetime(2026, 3, 29, 12, 0, tzinfo=UTC), paris)
    assert spring[1].timestamp() - spring[0].timestamp() == 23 * 3600
    feb = bounds("monthly", datetime(2028, 2, 15, tzinfo=UTC), utc)
    assert feb[1] == datetime(2028, 3, 1, tzinfo=utc)


@pytest.mark.parametrize(
    ("spent", "status"),
    [
        (0, "green"),
        (74_999, "green"),
        (75_000, "yellow"),
        (90_000, "yellow"),
        (90_001, "red"),
        (99_999, "red"),
        (100_000, "exceeded"),
        (250_000, "exceeded"),
    ],
)
def test_status_boundaries(spent, status):
    assert budget_status(spent, 100_000) == status


# --- spend from the store ----------------------------------------------------------------------------------------

IN_MONTH = [
    record(1, datetime(2026, 12, 1, 0, 0, tzinfo=UTC), 1_000_000_001),  # the month's first instant
    record(2, datetime(2026, 12, 7, 9, 17, 3, tzinfo=UTC), 2_000_000_003, feature="signal_parsing"),
    record(3, datetime(2026, 12, 10, 0, 0, 0, 1000, tzinfo=UTC), 3_000_000_007, feature="signal_parsing"),
    record(4, datetime(2026, 12, 10, 15, 29, 59, tzinfo=UTC), 5_000_000_011, provider="anthropic", user_id="alice"),
    record(5, datetime(2026, 12, 10, 15, 10, tzinfo=UTC), 0, priced=False, customer_cost_nusd=None),
]
OUTSIDE = [
    record(10, datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC), 7_000_000_000),  # last month
    record(11, datetime(2026, 12, 10, 15, 30, 1, tzinfo=UTC), 9_000_000_000),  # after NOW
]


def spend(records: list[Record], start: datetime, basis: str = "customer", **scope: Any) -> int:
    column = "customer_cost_nusd" if basis == "customer" else "provider_cost_nusd"
    return sum(
        getattr(r, column) or 0
        for r in records
        if ns(start) <= r.start_time_ns <= ns(NOW) and all(getattr(r, k) == v for k, v in scope.items())
    )


def test_spend_is_exact_for_every_period_scope_and_basis(store: Store):
    store.write(IN_MONTH + OUTSIDE)
    cases = [
        ({"name": "m", "period": "monthly", "amount_usd": 100}, datetime(2026, 12, 1, tzinfo=UTC), {}),
        ({"name": "w", "period": "weekly", "amount_usd": 100}, datetime(2026, 12, 7, tzinfo=UTC), {}),
        ({"name": "d", "period": "daily", "amount_usd": 100}, datetime(2026, 12, 10, tzinfo=UTC), {}),
        (
            {"name": "f", "period": "monthly", "amount_usd": 100, "scope": {"feature": "signal_parsing"}},
            datetime(2026, 12, 1, tzinfo=UTC),
            {"feature": "signal_parsing"},
        ),
        (
            {"name": "u", "period": "daily", "amount_usd": 100, "scope": {"user": "alice", "provider": "anthropic"}},
            datetime(2026, 12, 10, tzinfo=UTC),
            {"user_id": "alice", "provider": "anthropic"},
        ),
        # Kolkata is UTC+5:30: its day started at 18:30 UTC the day before, not on an hour boundary.
        (
            {"name": "k", "period": "daily", "amount_usd": 100, "timezone": "Asia/Kolkata"},
            datetime(2026, 12, 9, 18, 30, tzinfo=UTC),
            {},
        ),
    ]
    for entry, start, scope in cases:
        for basis in ("customer", "provider"):
            (budget,) = settings({**entry, "basis": basis}).budgets
            state = budget_state(store, budget, NOW)
            assert state.spent_nusd == spend(IN_MONTH + OUTSIDE, start, basis, **scope), (entry, basis)
            assert state.start == start
    (monthly,) = settings({"name": "m", "period": "monthly", "amount_usd": 100}).budgets
    state = budget_state(store, monthly, NOW)
    assert (state.requests, state.unpriced_requests) == (5, 1)


def test_a_new_period_starts_from_zero_without_a_reset(store: Store):
    store.write(IN_MONTH)
    (daily,) = settings({"name": "d", "period": "daily", "amount_usd": 0.000001, "mode": "hard"}).budgets
    today = budget_state(store, daily, NOW)
    assert today.exceeded and today.status == "exceeded"
    tomorrow = budget_state(store, daily, datetime(2026, 12, 11, 0, 0, tzinfo=UTC))
    assert (tomorrow.spent_nusd, tomorrow.exceeded, tomorrow.status) == (0, False, "green")
    (monthly,) = settings({"name": "m", "period": "monthly", "amount_usd": 1}).budgets
    assert budget_state(store, monthly, datetime(2027, 1, 1, 0, 0, tzinfo=UTC)).spent_nusd == 0


def test_projection_days_remaining_and_json(store: Store):
    # 6 USD spent by the middle of a 31-day month: linear projection 12 USD.
    mid = datetime(2026, 12, 16, 12, 0, tzinfo=UTC)
    store.write([record(1, datetime(2026, 12, 2, tzinfo=UTC), 6_000_000_000)])
    (budget,) = settings({"name": "m", "period": "monthly", "amount_usd": 8, "team": "ops"}).budgets
    state = budget_state(store, budget, mid)
    assert state.projected_nusd == 12_000_000_000
    shown = state.as_json()
    assert shown["spent_usd"] == 6.0 and shown["limit_usd"] == 8.0 and shown["remaining_usd"] == 2.0
    assert shown["utilization"] == 0.75 and shown["percentage"] == 75.0 and shown["status"] == "yellow"
    assert shown["days_remaining"] == 15.5 and shown["projected_usd"] == 12.0
    assert (shown["period_start"], shown["period_end"], shown["team"]) == (
        "2026-12-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
        "ops",
    )


def test_repricing_changes_spend(store: Store):
    store.write(IN_MONTH)
    (budget,) = settings({"name": "m", "period": "monthly", "amount_usd": 100}).budgets
    before = budget_state(store, budget, NOW).spent_nusd

    def double(r: Record) -> bool:
        if r.customer_cost_nusd is None:
            return False
        r.customer_cost_nusd *= 2
        return True

    day = ns(datetime(2026, 12, 10, tzinfo=UTC))
    store.reprice_between(day, day + 86_400 * 10**9, double)
    today = sum(r.customer_cost_nusd or 0 for r in IN_MONTH if r.start_time_ns >= day)
    assert budget_state(store, budget, NOW).spent_nusd == before + today


def test_credits_subtract_that_providers_cost_since_the_date(store: Store):
    store.write(IN_MONTH + OUTSIDE)
    parsed = settings(credits=[{"provider": "openai", "balance_usd": 50, "since": "2026-12-07T09:00:00Z"}])
    (credit,) = parsed.credits
    state = credit_state(store, credit, NOW)
    since = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert state.spent_nusd == spend(IN_MONTH + OUTSIDE, since, "provider", provider="openai")
    assert state.remaining_nusd == 50_000_000_000 - state.spent_nusd
    assert state.as_json()["remaining_usd"] == pytest.approx(50 - state.spent_nusd / 1e9)


# --- Prometheus families -----------------------------------------------------------------------------------------


def scrape(store: Any, parsed: BudgetSettings, now: datetime = NOW) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BudgetMetrics(store, parsed, clock=lambda: now))
    return generate_latest(registry).decode()


def test_families_carry_budget_credit_spend_and_thresholds(store: Store):
    store.write(IN_MONTH + OUTSIDE + [record(20, NOW - timedelta(hours=1), 1_500_000_000, environment="production")])
    parsed = BudgetSettings.from_sections(
        [{"name": "m", "period": "monthly", "amount_usd": 20, "mode": "hard", "team": "ops"}],
        [{"provider": "openai", "balance_usd": 50, "since": "2026-12-01"}],
        {"thresholds": {"spend_daily_medium_usd": 2}},
    )
    text = scrape(store, parsed)
    labels = {"budget": "m", "period": "monthly", "mode": "hard", "team": "ops"}
    spent = spend(IN_MONTH, datetime(2026, 12, 1, tzinfo=UTC)) + 1_500_000_000
    assert metric_sum(text, "completion_budget_limit_usd", **labels) == 20
    assert metric_sum(text, "completion_budget_spent_usd", **labels) == pytest.approx(spent / 1e9, abs=1e-9)
    assert metric_sum(text, "completion_budget_utilization_ratio", **labels) == pytest.approx(spent / 20e9)
    assert metric_sum(text, "completion_budget_projected_usd", **labels) > spent / 1e9
    assert metric_sum(text, "completion_credit_balance_usd", provider="openai") == 50
    provider_cost = spend(IN_MONTH, datetime(2026, 12, 1, tzinfo=UTC), "provider", provider="openai") + 1_200_000_000
    assert metric_sum(text, "completion_credit_remaining_usd", provider="openai") == pytest.approx(
        50 - provider_cost / 1e9
    )
    day = spend(IN_MONTH, datetime(2026, 12, 10, tzinfo=UTC))
    assert metric_sum(text, "completion_spend_usd", period="day", basis="customer", environment="") == pytest.approx(
        day / 1e9
    )
    assert metric_sum(text, "completion_spend_usd", period="day", basis="customer", environment="production") == 1.5
    assert metric_sum(text, "completion_spend_usd", period="day", basis="provider", environment="production") == 1.2
    assert metric_sum(text, "completion_alert_threshold", alert="spend_daily_medium_usd") == 2
    assert metric_sum(text, "completion_alert_threshold", alert="error_rate_high") == 0.1
    assert text.count("completion_alert_threshold{") == len(DEFAULT_THRESHOLDS)


def test_an_empty_store_still_has_a_zero_spend_series():
    with open_store("sqlite:///:memory:") as store:
        text = scrape(store, BudgetSettings())
    for period in ("day", "week", "month"):
        assert f'completion_spend_usd{{basis="customer",environment="",period="{period}"}} 0.0' in text


def test_a_failing_store_leaves_out_its_families_but_not_the_thresholds():
    class Down:
        def usage(self, *args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("database is gone")

    text = scrape(Down(), settings({"name": "m", "period": "monthly", "amount_usd": 1}))
    assert "completion_alert_threshold{" in text
    assert "completion_budget_spent_usd{" not in text and "completion_spend_usd{" not in text


# --- /api/v1/budgets and the command -----------------------------------------------------------------------------

ADMIN, ALICE, APP = "admin-token-0123456789", "alice-token-0123456789", "app-token-0123456789ab"
TOKENS = [
    {"name": "ops", "role": "admin", "token": ADMIN},
    {"name": "alice", "role": "member", "user": "alice", "token": ALICE},
    {"name": "apps", "role": "app", "token": APP},
]
BUDGETS = [
    {"name": "all", "period": "monthly", "amount_usd": 1000, "team": "platform"},
    {"name": "alice-daily", "period": "daily", "amount_usd": 0.000001, "mode": "hard", "scope": {"user": "alice"}},
]


def test_api_and_command_serve_the_same_budgets_with_access_rules(store_url: str, tmp_path: Path):
    now = datetime.now(UTC)
    current = [
        record(1, now - timedelta(seconds=5), 1_000_000_001, user_id="alice"),
        record(2, now - timedelta(seconds=4), 2_000_000_002, user_id="bob"),
    ]
    with open_store(store_url) as store:
        store.write(current)
    credits = [{"provider": "openai", "balance_usd": 10, "since": "2026-01-01"}]
    receiver = Receiver(tmp_path, store_url, budgets=BUDGETS, credits=credits, api={"tokens": TOKENS}).start()
    try:

        def get(token: str | None, path: str = "/api/v1/budgets") -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx.get(f"{receiver.http_url}{path}", headers=headers, timeout=30)

        assert get(None).status_code == 401
        admin = get(ADMIN).json()
        assert [b["name"] for b in admin["budgets"]] == ["all", "alice-daily"]
        by_name = {b["name"]: b for b in admin["budgets"]}
        assert by_name["alice-daily"]["spent_nusd"] == 1_000_000_001
        assert by_name["alice-daily"]["exceeded"] is True and by_name["alice-daily"]["status"] == "exceeded"
        month_start = ns(datetime(now.year, now.month, 1, tzinfo=UTC))
        this_month = [r for r in current if r.start_time_ns >= month_start]
        assert by_name["all"]["spent_nusd"] == sum(r.customer_cost_nusd or 0 for r in this_month)
        assert admin["credits"][0]["provider"] == "openai"
        assert admin["credits"][0]["spent_usd"] == pytest.approx(sum(r.provider_cost_nusd or 0 for r in current) / 1e9)

        member = get(ALICE).json()
        assert [b["name"] for b in member["budgets"]] == ["alice-daily"] and member["credits"] == []
        app = get(APP).json()
        assert [b["name"] for b in app["budgets"]] == ["all", "alice-daily"]
        for path in ("/api/v1/usage", "/api/v1/requests", "/api/v1/export"):
            refused = get(APP, path)
            assert refused.status_code == 403, path
            assert "app" in refused.json()["error"]
        assert get(ADMIN, "/api/v1/usage").status_code == 200
        assert "/api/v1/budgets" in get(ADMIN, "/api/v1/openapi.json").json()["paths"]

        text = receiver.metrics()
        ratio = metric_sum(text, "completion_budget_utilization_ratio", budget="alice-daily")
        assert ratio == pytest.approx(1_000_000_001 / 1_000)  # 0.000001 USD = 1,000 nano-USD

        config = tmp_path / f"llmtally-{receiver.http_port}.yaml"
        run = subprocess.run(
            [LLMTALLY, "budgets", "--config", str(config), "--json"], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        shown = json.loads(run.stdout)
        assert [(b["name"], b["spent_nusd"], b["status"]) for b in shown["budgets"]] == [
            (b["name"], b["spent_nusd"], b["status"]) for b in admin["budgets"]
        ]
        table = subprocess.run(
            [LLMTALLY, "budgets", "--config", str(config)], capture_output=True, text=True, timeout=60
        )
        assert table.returncode == 0, table.stderr
        assert "alice-daily" in table.stdout and "exceeded" in table.stdout and "user=alice" in table.stdout
        assert "Provider credits" in table.stdout
    finally:
        assert receiver.stop() == 0
