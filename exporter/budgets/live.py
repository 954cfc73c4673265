"""The budgets, credits and alert thresholds in force in `serve`: replaced on a configuration reload (`reload`),
read by the API's /budgets and the Prometheus families at each call."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import Config
from ..reload import Apply, on_reload
from ..store import Store
from .config import BudgetSettings
from .metrics import BudgetMetrics


class LiveBudgets:
    """The current `BudgetSettings` (call it), with the `metrics` collector that exports them; follows reloads."""

    def __init__(self, store: Store, settings: BudgetSettings) -> None:
        self.settings = settings
        self.metrics = BudgetMetrics(store, settings)
        on_reload("budgets, credits and alert thresholds", self.prepare)

    def __call__(self) -> BudgetSettings:
        return self.settings

    def prepare(self, config: Config) -> Apply:
        """Checks the new `budgets:`, `credits:` and `alerts:` sections (ConfigError names a bad key)."""
        new = BudgetSettings.from_config(config)

        def apply() -> Mapping[str, int]:
            self.settings = self.metrics.settings = new
            return {"budgets": len(new.budgets), "credits": len(new.credits)}

        return apply
