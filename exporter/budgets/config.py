"""The `budgets:`, `credits:` and `alerts:` sections of llmtally.yaml, checked: a bad entry is refused by key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..config import Config, ConfigError, checked_mapping, checked_text
from ..dimensions import Dimensions
from .periods import PERIODS, Period, ns

Mode = Literal["soft", "hard"]
Basis = Literal["customer", "provider"]
MODES: tuple[Mode, ...] = ("soft", "hard")
BASES: tuple[Basis, ...] = ("customer", "provider")
# Scope keys (as written in llmtally.yaml and served by the API) -> the store's rollup dimension.
SCOPE_DIMENSIONS: dict[str, str] = {
    "provider": "provider",
    "model": "request_model",
    "user": "user_id",
    "api_key": "api_key",
    "feature": "feature",
    "department": "department",
    "environment": "environment",
}
_BUDGET_KEYS = frozenset({"name", "period", "amount_usd", "basis", "scope", "mode", "team", "timezone"})
_CREDIT_KEYS = frozenset({"provider", "balance_usd", "since"})
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
NANO = Decimal(1_000_000_000)

# alerts.thresholds: exported as completion_alert_threshold{alert=<key>}; the defaults are the seeds' numbers.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "spend_daily_medium_usd": 10.0,
    "spend_daily_high_usd": 25.0,
    "spend_daily_critical_usd": 50.0,
    "spend_spike_ratio": 3.0,
    "spend_spike_min_usd": 1.0,
    "error_rate_high": 0.10,
    "error_rate_critical": 0.25,
    "error_min_requests": 10.0,
    "health_critical_success_ratio": 0.75,
    "latency_p95_seconds": 30.0,
    "ttft_p95_seconds": 5.0,
    "latency_min_requests": 20.0,
    "budget_medium_ratio": 0.75,
    "budget_high_ratio": 0.90,
    "budget_critical_ratio": 1.0,
    "ratelimit_remaining_ratio": 0.10,
    "ingestion_stalled_seconds": 3600.0,
    "price_catalog_max_age_seconds": 30 * 86400.0,
    "credit_low_usd": 10.0,
}


@dataclass(frozen=True)
class Budget:
    """One configured budget: `amount_nusd` of `basis` cost per calendar `period` (in `timezone`) within `scope`."""

    name: str
    period: Period
    amount_nusd: int
    basis: Basis = "customer"
    scope: Mapping[str, str] = field(default_factory=dict)
    mode: Mode = "soft"
    team: str = ""
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def filters(self) -> dict[str, str]:
        """The scope's built-in keys as store dimension filters."""
        return {SCOPE_DIMENSIONS[k]: v for k, v in self.scope.items() if k in SCOPE_DIMENSIONS}

    def dimensions(self) -> dict[str, str]:
        """The scope's custom dimensions (declared under `dimensions:`), by key."""
        return {k: v for k, v in self.scope.items() if k not in SCOPE_DIMENSIONS}


@dataclass(frozen=True)
class Credit:
    """A provider's prepaid balance on `since_ns`; what remains is it minus the provider cost since then."""

    provider: str
    balance_nusd: int
    since_ns: int


@dataclass(frozen=True)
class BudgetSettings:
    budgets: tuple[Budget, ...] = ()
    credits: tuple[Credit, ...] = ()
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))

    @classmethod
    def from_config(cls, config: Config) -> BudgetSettings:
        """The budgets, credits and thresholds of a loaded configuration. Raises ConfigError naming the key."""
        dimensions = Dimensions.from_config(config).keys
        return cls.from_sections(config.budgets, config.credits, config.alerts, dimensions)

    @classmethod
    def from_sections(
        cls, budgets: Any = None, credits: Any = None, alerts: Any = None, dimensions: tuple[str, ...] = ()
    ) -> BudgetSettings:
        """Parses the three sections (None: absent); a scope may name the declared custom `dimensions`. Raises
        ConfigError naming the offending key."""
        return cls(_budgets(budgets, dimensions), _credits(credits), _thresholds(alerts))


def _list(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list")
    return value


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, not {value!r}")
    return cast(str, value)


def _usd(value: Any, key: str, *, positive: bool) -> int:
    """USD -> nano-USD, exactly (the text of the number, not its binary float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} must be a number of USD, not {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{key} must be a number of USD, not {value!r}") from None
    if not amount.is_finite() or amount < 0 or (positive and amount == 0):
        raise ConfigError(f"{key} must be {'greater than zero' if positive else 'zero or more'}, not {value!r}")
    if amount > Decimal(10) ** 9:
        raise ConfigError(f"{key} must be at most 1,000,000,000 USD, not {value!r}")
    return int(amount * NANO)


def _budgets(value: Any, dimensions: tuple[str, ...] = ()) -> tuple[Budget, ...]:
    budgets: list[Budget] = []
    for i, entry in enumerate(_list(value, "budgets")):
        key = f"budgets[{i}]"
        entry = checked_mapping(entry, key, _BUDGET_KEYS, ("name", "period", "amount_usd"))
        name = checked_text(entry["name"], f"{key}.name")
        if not _NAME.match(name):
            raise ConfigError(f"{key}.name must be 1-64 letters, digits or . _ : -, not {name!r}")
        if any(b.name == name for b in budgets):
            raise ConfigError(f"{key}.name {name!r} is used by another budget")
        key = f"budgets[{i}] ({name})"
        scope = checked_mapping(entry.get("scope") or {}, f"{key}.scope", frozenset((*SCOPE_DIMENSIONS, *dimensions)))
        timezone = checked_text(entry.get("timezone", "UTC"), f"{key}.timezone")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{key}.timezone {timezone!r} is not an IANA time zone, e.g. Europe/Paris") from None
        team = entry.get("team", "")
        budgets.append(
            Budget(
                name=name,
                period=cast(Period, _choice(entry["period"], f"{key}.period", PERIODS)),
                amount_nusd=_usd(entry["amount_usd"], f"{key}.amount_usd", positive=True),
                basis=cast(Basis, _choice(entry.get("basis", "customer"), f"{key}.basis", BASES)),
                scope={k: checked_text(v, f"{key}.scope.{k}") for k, v in sorted(scope.items())},
                mode=cast(Mode, _choice(entry.get("mode", "soft"), f"{key}.mode", MODES)),
                team=checked_text(team, f"{key}.team") if team != "" else "",
                timezone=timezone,
            )
        )
    return tuple(budgets)


def _since(value: Any, key: str) -> int:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{key} must be an ISO 8601 date or date-time, not {value!r}") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    else:
        raise ConfigError(f"{key} must be an ISO 8601 date or date-time, not {value!r}")
    if not 1970 <= moment.year < 2200:
        raise ConfigError(f"{key} must be between 1970 and 2200, not {value!r}")
    return ns(moment)


def _credits(value: Any) -> tuple[Credit, ...]:
    credits: list[Credit] = []
    for i, entry in enumerate(_list(value, "credits")):
        key = f"credits[{i}]"
        entry = checked_mapping(entry, key, _CREDIT_KEYS, ("provider", "balance_usd", "since"))
        provider = checked_text(entry["provider"], f"{key}.provider")
        if any(c.provider == provider for c in credits):
            raise ConfigError(f"{key}.provider {provider!r} has another credits entry")
        balance = _usd(entry["balance_usd"], f"{key}.balance_usd", positive=False)
        credits.append(Credit(provider, balance, _since(entry["since"], f"{key}.since")))
    return tuple(credits)


def _thresholds(value: Any) -> dict[str, float]:
    thresholds = dict(DEFAULT_THRESHOLDS)
    if value is None:
        return thresholds
    alerts = checked_mapping(value, "alerts", frozenset({"thresholds"}))
    given = checked_mapping(alerts.get("thresholds") or {}, "alerts.thresholds", frozenset(DEFAULT_THRESHOLDS))
    for name, number in given.items():
        key = f"alerts.thresholds.{name}"
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError(f"{key} must be a number, not {number!r}")
        if not float(number) >= 0 or float(number) == float("inf"):
            raise ConfigError(f"{key} must be zero or more, not {number!r}")
        thresholds[name] = float(number)
    return thresholds
