"""Each budget's and credit's state at a moment, computed from the audit store's rollups (exact for any bounds).

Nothing is reset by a job: a period's spend is the sum over the records of that period, so a new period starts at
zero by itself, re-pricing changes the spend, and several receivers on one database agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..normalise.record import usd
from ..store import Store
from ..store.json_sql import DIMENSIONS_COLUMN
from ..store.select import Selection
from .config import Budget, BudgetSettings, Credit
from .periods import bounds, ns

# Status by utilisation: green below 75 %, yellow 75-90 %, red above 90 %, exceeded from 100 %.
YELLOW_FROM, RED_ABOVE = 0.75, 0.90
_COST = {"customer": "customer_cost_nusd", "provider": "provider_cost_nusd"}


def budget_status(spent_nusd: int, limit_nusd: int) -> str:
    """green / yellow / red / exceeded, computed on exact integers (75 % is yellow, 90 % yellow, 90.1 % red)."""
    if spent_nusd >= limit_nusd:
        return "exceeded"
    if spent_nusd * 100 > limit_nusd * 90:
        return "red"
    if spent_nusd * 100 >= limit_nusd * 75:
        return "yellow"
    return "green"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class BudgetState:
    budget: Budget
    start: datetime
    end: datetime
    now: datetime
    spent_nusd: int
    requests: int
    unpriced_requests: int

    @property
    def utilization(self) -> float:
        return self.spent_nusd / self.budget.amount_nusd

    @property
    def projected_nusd(self) -> int:
        """Spend at period end if the rest of the period spends at the rate of the part so far (linear)."""
        elapsed = (self.now - self.start).total_seconds()
        length = (self.end - self.start).total_seconds()
        if elapsed <= 0:
            return self.spent_nusd
        return round(self.spent_nusd * length / elapsed)

    @property
    def status(self) -> str:
        return budget_status(self.spent_nusd, self.budget.amount_nusd)

    @property
    def exceeded(self) -> bool:
        return self.spent_nusd >= self.budget.amount_nusd

    def as_json(self) -> dict[str, Any]:
        b = self.budget
        return {
            "name": b.name,
            "period": b.period,
            "mode": b.mode,
            "basis": b.basis,
            "team": b.team or None,
            "timezone": b.timezone,
            "scope": dict(b.scope),
            "period_start": _iso(self.start),
            "period_end": _iso(self.end),
            "limit_usd": usd(b.amount_nusd),
            "spent_usd": usd(self.spent_nusd),
            "spent_nusd": self.spent_nusd,
            "remaining_usd": usd(max(0, b.amount_nusd - self.spent_nusd)),
            "utilization": round(self.utilization, 6),
            "percentage": round(self.utilization * 100, 2),
            "projected_usd": usd(self.projected_nusd),
            "days_remaining": round(max(0.0, (self.end - self.now).total_seconds()) / 86400, 2),
            "status": self.status,
            "exceeded": self.exceeded,
            "requests": self.requests,
            "unpriced_requests": self.unpriced_requests,
        }


@dataclass(frozen=True)
class CreditState:
    credit: Credit
    spent_nusd: int

    @property
    def remaining_nusd(self) -> int:
        return self.credit.balance_nusd - self.spent_nusd

    def as_json(self) -> dict[str, Any]:
        c = self.credit
        return {
            "provider": c.provider,
            "balance_usd": usd(c.balance_nusd),
            "since": _iso(datetime.fromtimestamp(c.since_ns / 1e9, UTC)),
            "spent_usd": usd(self.spent_nusd),
            "remaining_usd": usd(self.remaining_nusd),
        }


def budget_state(store: Store, budget: Budget, now: datetime) -> BudgetState:
    """`budget` in the period holding `now`: the store's spend from the period's start up to `now`."""
    start, end = bounds(budget.period, now, budget.zone)
    dimensions = budget.dimensions()
    if dimensions:  # custom dimensions are not in the rollups: summed from the records
        json = {(DIMENSIONS_COLUMN, k): (v,) for k, v in dimensions.items()}
        rows = store.record_usage([Selection(ns(start), ns(now) + 1, budget.filters(), json=json)], [])
    else:
        rows = store.usage([], ns(start), ns(now) + 1, budget.filters())
    row = rows[0] if rows else {}
    return BudgetState(
        budget,
        start,
        end,
        now,
        int(row.get(_COST[budget.basis], 0)),
        int(row.get("requests", 0)),
        int(row.get("unpriced_requests", 0)),
    )


def credit_state(store: Store, credit: Credit, now: datetime) -> CreditState:
    """The provider cost spent against `credit` from its `since` up to `now`."""
    end = ns(now) + 1
    spent = 0
    if credit.since_ns < end:
        rows = store.usage([], credit.since_ns, end, {"provider": credit.provider})
        spent = int(rows[0]["provider_cost_nusd"]) if rows else 0
    return CreditState(credit, spent)


def states(
    store: Store, settings: BudgetSettings, now: datetime | None = None
) -> tuple[list[BudgetState], list[CreditState]]:
    """Every budget's and credit's state at `now` (default: the current time)."""
    now = now or datetime.now(UTC)
    return (
        [budget_state(store, b, now) for b in settings.budgets],
        [credit_state(store, c, now) for c in settings.credits],
    )


def report(budgets: Sequence[BudgetState], credits: Sequence[CreditState], now: datetime) -> dict[str, Any]:
    """The JSON answer of /api/v1/budgets and `llmtally budgets --json`."""
    return {
        "as_of": _iso(now),
        "budgets": [b.as_json() for b in budgets],
        "credits": [c.as_json() for c in credits],
    }
