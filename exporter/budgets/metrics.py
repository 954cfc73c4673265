"""Prometheus families computed from the store at scrape time: budgets, credits, calendar spend, alert thresholds.

The store is shared by every receiver on one database, so each replica reports the same values: rules and
dashboards aggregate these gauges with `max`, not `sum`. A store that fails leaves the store-derived families out of
that scrape (the thresholds are still served) and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..store import Store, StoreError
from .config import BudgetSettings
from .periods import Period, bounds, ns
from .status import states

log = logging.getLogger("llmtally.budgets")
BUDGET_LABELS = ("budget", "period", "mode", "team")
# completion_spend_usd{period}: the current calendar period in UTC, as the reports' "today" is.
SPEND_PERIODS: tuple[tuple[str, Period], ...] = (("day", "daily"), ("week", "weekly"), ("month", "monthly"))


class BudgetMetrics(Collector):
    def __init__(
        self, store: Store, settings: BudgetSettings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        threshold = GaugeMetricFamily(
            "completion_alert_threshold", "Alert thresholds from llmtally.yaml alerts.thresholds", labels=("alert",)
        )
        for name, value in sorted(self.settings.thresholds.items()):
            threshold.add_metric((name,), value)
        yield threshold
        now = self.clock()
        try:
            families = self._from_store(now)
        except StoreError as error:
            log.warning("budget and spend metrics left out of this scrape: the store failed: %s", error)
            return
        yield from families

    def _from_store(self, now: datetime) -> list[GaugeMetricFamily]:
        budgets, credits = states(self.store, self.settings, now)
        limit = GaugeMetricFamily("completion_budget_limit_usd", "Budget amount per period", labels=BUDGET_LABELS)
        spent = GaugeMetricFamily(
            "completion_budget_spent_usd", "Spent in the budget's current period", labels=BUDGET_LABELS
        )
        ratio = GaugeMetricFamily(
            "completion_budget_utilization_ratio", "Spent / limit (1 = 100 %)", labels=BUDGET_LABELS
        )
        projected = GaugeMetricFamily(
            "completion_budget_projected_usd",
            "Spend at period end at the period's rate so far (linear projection)",
            labels=BUDGET_LABELS,
        )
        for state in budgets:
            b = state.budget
            labels = (b.name, b.period, b.mode, b.team)
            limit.add_metric(labels, b.amount_nusd / 1e9)
            spent.add_metric(labels, state.spent_nusd / 1e9)
            ratio.add_metric(labels, state.utilization)
            projected.add_metric(labels, state.projected_nusd / 1e9)
        balance = GaugeMetricFamily(
            "completion_credit_balance_usd", "Configured provider credit balance", labels=("provider",)
        )
        remaining = GaugeMetricFamily(
            "completion_credit_remaining_usd", "Credit balance minus provider cost since then", labels=("provider",)
        )
        for credit in credits:
            balance.add_metric((credit.credit.provider,), credit.credit.balance_nusd / 1e9)
            remaining.add_metric((credit.credit.provider,), credit.remaining_nusd / 1e9)
        return [limit, spent, ratio, projected, balance, remaining, self._spend(now)]

    def _spend(self, now: datetime) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "completion_spend_usd",
            "Spend of the current UTC calendar day, ISO week or month, by environment, from the store",
            labels=("period", "basis", "environment"),
        )
        for name, period in SPEND_PERIODS:
            start, _ = bounds(period, now, UTC)
            rows = self.store.usage(["environment"], ns(start), ns(now) + 1)
            by_env = {str(row["environment"]): row for row in rows}
            by_env.setdefault("", {"customer_cost_nusd": 0, "provider_cost_nusd": 0})
            for env, row in sorted(by_env.items()):
                family.add_metric((name, "customer", env), int(row["customer_cost_nusd"]) / 1e9)
                family.add_metric((name, "provider", env), int(row["provider_cost_nusd"]) / 1e9)
        return family
