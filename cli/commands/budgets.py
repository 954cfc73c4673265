"""`llmtally budgets`: every budget's limit, spend, projection and status, and the provider credits."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from llmtally.exporter.budgets.config import BudgetSettings
from llmtally.exporter.budgets.status import report, states
from llmtally.exporter.store import open_store

from .options import config_of, print_json
from .tables import Column, count, money, show, text


def _scope(scope: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in scope.items()) or "all"


def _percent(value: Any) -> str:
    return f"{float(value):.1f}%"


def _days(value: Any) -> str:
    return f"{float(value):.1f}"


_BUDGETS: list[Column] = [
    ("budget", "name", text),
    ("period", "period", text),
    ("mode", "mode", text),
    ("scope", "scope_text", text),
    ("team", "team", text),
    ("limit", "limit_usd", money),
    ("spent", "spent_usd", money),
    ("used", "percentage", _percent),
    ("projected", "projected_usd", money),
    ("days left", "days_remaining", _days),
    ("requests", "requests", count),
    ("status", "status", text),
]
_CREDITS: list[Column] = [
    ("provider", "provider", text),
    ("since", "since", text),
    ("balance", "balance_usd", money),
    ("spent", "spent_usd", money),
    ("remaining", "remaining_usd", money),
]


def budgets(args: argparse.Namespace) -> int:
    config = config_of(args)
    settings = BudgetSettings.from_config(config)
    now = datetime.now(UTC)
    with open_store(config.store) as store:
        found = report(*states(store, settings, now), now)
    if args.json:
        print_json(found)
        return 0
    rows = [{**b, "scope_text": _scope(b["scope"])} for b in found["budgets"]]
    caption = None if rows else "no budgets configured: add budgets: to llmtally.yaml (see llmtally.example.yaml)"
    show(f"Budgets as of {found['as_of']}", rows, _BUDGETS, caption=caption)
    if found["credits"]:
        show("Provider credits", found["credits"], _CREDITS)
    return 0
