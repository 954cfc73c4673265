"""The alert rules and the Alertmanager routing end to end, on real parts: the example app under
`opentelemetry-instrument` spends past a budget and a daily spend threshold through a real `llmtally serve` (SQLite,
then PostgreSQL); a real Prometheus scrapes it and evaluates a copy of `alert-rules/*.rules.yml` (every `for:`
shortened); a real Alertmanager routes with a copy of `alert-rules/alertmanager.yml` (webhooks pointed at the test,
waits shortened) to a webhook receiver run here. The right alerts must arrive with the right labels and values, and
the inhibited ones must not (while Alertmanager shows them held back by the firing ones). Then the app runs again in
a staging environment while Prometheus scrapes: the recording rules count those new series exactly as the store does
(and the records stored before Prometheus started not at all), and staging's critical alert goes to chat, not the
pager."""

from __future__ import annotations

import contextlib
import re
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerting_stack import (
    ALERTMANAGER,
    PROMETHEUS,
    Alertmanager,
    Prometheus,
    Webhook,
    copy_alertmanager_config,
    copy_rules,
    require_binary,
    stack_logs,
    wait_for,
)
from instrumented_app import APP_CALLS, run_instrumented_app
from receiver import Receiver

RULES = Path(__file__).resolve().parent.parent / "alert-rules"
DEADLINE = 60.0
ENVIRONMENT = "prod"
STAGING = "staging"
BUDGET: dict[str, Any] = {
    "name": "research-openai",
    "period": "daily",
    "amount_usd": 0.001,
    "scope": {"feature": "signal_parsing", "provider": "openai"},
    "mode": "hard",
    "team": "research",
}
# One run of the example app costs about a cent: every daily spend threshold is crossed.
THRESHOLDS = {"spend_daily_medium_usd": 0.001, "spend_daily_high_usd": 0.002, "spend_daily_critical_usd": 0.003}

# The alerts this scenario must make fire and be sent; the ones that fire but must be inhibited by them.
SPEND, SPEND_TOTAL, BUDGET_ALERT = "LLMDailySpendCritical", "LLMDailySpendTotalCritical", "LLMBudgetExceeded"
SENT = {SPEND, SPEND_TOTAL, BUDGET_ALERT}
INHIBITED = {
    "LLMDailySpendMedium",
    "LLMDailySpendHigh",
    "LLMDailySpendTotalMedium",
    "LLMDailySpendTotalHigh",
    "LLMBudget75Percent",
    "LLMBudget90Percent",
}
# Recording rules and the /api/v1/usage totals they must equal.
RECORDED = {
    "llmtally:completion_requests:increase1h": "requests",
    "llmtally:completion_cost_usd:increase1h": "customer_cost_usd",
    "llmtally:completion_provider_cost_usd:increase1h": "provider_cost_usd",
    "llmtally:completion_unpriced_requests:increase1h": "unpriced_requests",
    "llmtally:completion_requests_error:increase1h": "errors",
}
SI_PREFIXES = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3, "u": 1e-6, "\u00b5": 1e-6, "n": 1e-9}


def hold(rule: dict[str, Any]) -> str:
    """The copy's `for:`. Here every threshold is crossed at once (in production the lower ones are crossed, and
    notified, earlier): the critical alerts fire first so that they are at Alertmanager before the ones they
    inhibit, and the test does not depend on the order in which Prometheus evaluates its rule groups."""
    return "0s" if rule.get("labels", {}).get("severity") == "critical" else "1s"


def only(alerts: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The one alert named `name` (notified once or more)."""
    (alert,) = {a["fingerprint"]: a for a in alerts if a["labels"]["alertname"] == name}.values()
    return alert


def drive_spend(receiver: Receiver, provider: Any, cwd: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs the app until the budget is exceeded and today's spend is past the critical threshold; returns the
    budget (from /api/v1/budgets) and today's usage in the environment (from /api/v1/usage), once all is stored."""
    for runs in range(1, 6):
        run_instrumented_app(
            provider.base_url, cwd, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint, LLMTALLY_ENVIRONMENT=ENVIRONMENT
        )
        expected = runs * APP_CALLS
        usage = wait_for(partial(stored, receiver, expected), 15, f"{expected} records stored: {receiver.log}")
        (budget,) = (b for b in api(receiver, "/api/v1/budgets")["budgets"] if b["name"] == BUDGET["name"])
        if budget["exceeded"] and usage["customer_cost_usd"] > THRESHOLDS["spend_daily_critical_usd"]:
            return budget, usage
    raise AssertionError(f"spend not past the budget and the critical threshold: {budget} {usage}")


def api(receiver: Receiver, path: str, **params: str) -> Any:
    answer = httpx.get(receiver.http_url + path, params=params, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()


def stored(receiver: Receiver, requests: int, environment: str = ENVIRONMENT) -> dict[str, Any] | None:
    """Today's usage in `environment` once it counts `requests`."""
    usage = usage_today(receiver, environment=environment)
    return usage if usage["requests"] == requests else None


def usage_today(receiver: Receiver, **filters: str) -> dict[str, Any]:
    totals: dict[str, Any] = api(receiver, "/api/v1/usage", range="today", **filters)["totals"]
    return totals


def annotated_value(alert: dict[str, Any]) -> float:
    """The number in the alert's summary, as Prometheus's `humanize` / `humanizePercentage` wrote it (4 digits, an SI
    prefix; a percentage as a fraction)."""
    summary = alert["annotations"]["summary"]
    found = re.search(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)(%|[kMGmun\u00b5]?)(?:\s|\)|$)", summary)
    assert found, summary
    number, suffix = float(found[1]), found[2]
    return number / 100 if suffix == "%" else number * SI_PREFIXES[suffix]


def scalar(prometheus: Prometheus, expr: str) -> float:
    """The value of `expr`, which must have exactly one series."""
    result = prometheus.query(expr)
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def test_alerts_reach_the_webhook_and_inhibited_ones_do_not(provider, tmp_path, store_url):
    require_binary(PROMETHEUS)
    require_binary(ALERTMANAGER)
    receiver = Receiver(tmp_path, store_url, budgets=[BUDGET], alerts={"thresholds": THRESHOLDS})
    webhook = Webhook()
    alertmanager = Alertmanager(tmp_path, tmp_path / "alertmanager.yml")
    copy_alertmanager_config(RULES / "alertmanager.yml", alertmanager.config, webhook.url)
    rule_files = copy_rules(RULES, tmp_path / "rules", hold)
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: receiver.stop())
        receiver.start()
        stack.callback(webhook.stop)
        webhook.start()
        budget, usage = drive_spend(receiver, provider, tmp_path)

        stack.callback(alertmanager.stop)
        alertmanager.start()
        prometheus = Prometheus(
            tmp_path, [f"127.0.0.1:{receiver.http_port}"], rule_files, f"127.0.0.1:{alertmanager.port}"
        )
        stack.callback(prometheus.stop)
        prometheus.start()

        def logs() -> str:
            return stack_logs(prometheus, alertmanager) + f"\nwebhook: {webhook.notifications}"

        wait_for(
            lambda: {a["labels"]["alertname"] for a in prometheus.firing()} >= SENT | INHIBITED,
            DEADLINE,
            lambda: f"{SENT | INHIBITED} firing in Prometheus: {prometheus.firing()}\n{logs()}",
        )
        wait_for(lambda: webhook.alertnames() >= SENT, DEADLINE, lambda: f"{SENT} at the webhook\n{logs()}")

        def held_back() -> bool:
            """Each inhibited alert is at Alertmanager, suppressed by another one."""
            alerts = alertmanager.alerts()
            return all(
                any(
                    a["labels"]["alertname"] == name
                    and a["status"]["state"] == "suppressed"
                    and a["status"]["inhibitedBy"]
                    for a in alerts
                )
                for name in INHIBITED
            )

        wait_for(held_back, DEADLINE, lambda: f"{INHIBITED} inhibited in Alertmanager: {alertmanager.alerts()}")
        time.sleep(3)  # a few group waits and intervals: an inhibited alert that were sent would have arrived by now
        assert not INHIBITED & webhook.alertnames(), logs()

        # The labels and values the webhook got match the store.
        alerts, total = webhook.alerts(), usage_today(receiver)  # total: every environment
        budget_alert = only(alerts, BUDGET_ALERT)
        labels = budget_alert["labels"]
        assert (labels["severity"], labels["budget"], labels["period"], labels["mode"], labels["team"]) == (
            "critical",
            BUDGET["name"],
            BUDGET["period"],
            BUDGET["mode"],
            BUDGET["team"],
        )
        assert annotated_value(budget_alert) == pytest.approx(budget["utilization"], rel=1e-3)
        # The budget's spend is the store's spend in its scope.
        scoped = usage_today(receiver, **BUDGET["scope"])
        assert budget["spent_nusd"] == scoped["customer_cost_nusd"] > 0
        assert budget["utilization"] == pytest.approx(budget["spent_usd"] / BUDGET["amount_usd"], rel=1e-9)

        spend_alert = only(alerts, SPEND)
        assert (spend_alert["labels"]["severity"], spend_alert["labels"]["environment"]) == ("critical", ENVIRONMENT)
        assert annotated_value(spend_alert) == pytest.approx(usage["customer_cost_usd"], rel=1e-3)
        total_alert = only(alerts, SPEND_TOTAL)
        assert total_alert["labels"]["severity"] == "critical"
        assert annotated_value(total_alert) == pytest.approx(total["customer_cost_usd"], rel=1e-3)

        # Routed as alertmanager.yml says: the team's budget route continues to the pager.
        assert webhook.receivers(BUDGET_ALERT) == {"team-research", "llmtally-pager"}
        assert webhook.receivers(SPEND) == webhook.receivers(SPEND_TOTAL) == {"llmtally-pager"}

        # Prometheus holds the same figures, the configured thresholds and the recording rules' results.
        selector = f'budget="{BUDGET["name"]}"'
        assert scalar(prometheus, f"max(completion_budget_spent_usd{{{selector}}})") == pytest.approx(
            budget["spent_usd"], abs=1e-9
        )
        day = f'period="day",basis="customer",environment="{ENVIRONMENT}"'
        assert scalar(prometheus, f"max(completion_spend_usd{{{day}}})") == pytest.approx(
            usage["customer_cost_usd"], abs=1e-9
        )
        for key, value in THRESHOLDS.items():
            assert scalar(prometheus, f'max(completion_alert_threshold{{alert="{key}"}})') == value
        assert scalar(prometheus, 'max(completion_alert_threshold{alert="budget_critical_ratio"})') == 1.0  # default
        # Prometheus started after those records were stored: its windows count none of them as new (they count what
        # the receiver stores from now on).
        rules = [r for g in prometheus.rule_groups() for r in g["rules"] if r["type"] == "recording"]
        assert {r["name"] for r in rules} >= set(RECORDED)
        assert [r for r in rules if r["health"] != "ok"] == []
        for name in RECORDED:
            assert scalar(prometheus, f'sum({name}{{environment="{ENVIRONMENT}"}})') == 0, name

        # Staging: new series born while Prometheus scrapes, counted in full, exactly as the store counts them.
        run_instrumented_app(
            provider.base_url,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint,
            LLMTALLY_ENVIRONMENT=STAGING,
        )
        staging = wait_for(partial(stored, receiver, APP_CALLS, STAGING), 15, f"staging records stored: {receiver.log}")
        assert staging["requests"] > 0 and staging["customer_cost_usd"] > 0

        def recorded_like_the_store() -> bool:
            for name, key in RECORDED.items():
                found = prometheus.query(f'sum({name}{{environment="{STAGING}"}})')
                if len(found) != 1 or abs(float(found[0]["value"][1]) - staging[key]) > 1e-9:
                    return False
            return True

        wait_for(
            recorded_like_the_store,
            DEADLINE,
            lambda: (
                f"{staging} recorded: "
                + str({n: prometheus.query(f'sum({n}{{environment="{STAGING}"}})') for n in RECORDED})
            ),
        )

        # Staging's daily spend passes the critical threshold too: that alert carries its environment and goes to
        # chat (alertmanager.yml's non-production route), never to the pager.
        wait_for(
            lambda: webhook.receivers(SPEND, environment=STAGING) == {"llmtally-chat"},
            DEADLINE,
            lambda: f"{SPEND} for {STAGING} at the chat receiver\n{logs()}",
        )
        assert webhook.receivers(SPEND, environment=ENVIRONMENT) == {"llmtally-pager"}
