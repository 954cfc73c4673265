"""The analytics settings of llmtally.yaml: `timezone:` (week and month buckets) and `health:` (status bounds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..config import Config, ConfigError


@dataclass(frozen=True)
class HealthBounds:
    """A provider's or model's health over a range: `critical` from `critical_errors` errors, else `warning` from
    `warning_errors`, else `healthy` at a success rate of `healthy_success_rate` or more, else `degraded`."""

    critical_errors: int = 10
    warning_errors: int = 5
    healthy_success_rate: float = 0.95

    def status(self, errors: int, success_rate: float) -> str:
        if errors >= self.critical_errors:
            return "critical"
        if errors >= self.warning_errors:
            return "warning"
        return "healthy" if success_rate >= self.healthy_success_rate else "degraded"

    def as_json(self) -> dict[str, Any]:
        return {
            "critical_errors": self.critical_errors,
            "warning_errors": self.warning_errors,
            "healthy_success_rate": self.healthy_success_rate,
        }

    @classmethod
    def parse(cls, section: Any) -> HealthBounds:
        """The `health:` section (None: the defaults). Raises ConfigError naming the key."""
        if section is None:
            return cls()
        if not isinstance(section, dict):
            raise ConfigError("health must be a mapping")
        unknown = set(section) - set(cls().as_json())
        if unknown:
            raise ConfigError(f"unknown key(s) health.{', health.'.join(sorted(unknown))}")
        values = {**cls().as_json(), **section}
        for key in ("critical_errors", "warning_errors"):
            value = values[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"health.{key} must be a whole number of at least 1, not {value!r}")
        rate = values["healthy_success_rate"]
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
            raise ConfigError(f"health.healthy_success_rate must be a number from 0 to 1, not {rate!r}")
        if values["warning_errors"] > values["critical_errors"]:
            raise ConfigError("health.warning_errors must not be above health.critical_errors")
        return cls(values["critical_errors"], values["warning_errors"], float(rate))


@dataclass(frozen=True)
class Analytics:
    """How the reports read: the time zone of week and month buckets, the health bounds."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    health: HealthBounds = field(default_factory=HealthBounds)

    @classmethod
    def from_config(cls, config: Config) -> Analytics:
        """Raises ConfigError naming the key."""
        return cls(zone(config.timezone), HealthBounds.parse(config.health))


def zone(name: Any) -> ZoneInfo:
    """An IANA time zone name (Europe/Paris, UTC) -> the zone; ConfigError for any other value."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"timezone must be an IANA time zone name such as Europe/Paris, not {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone {name!r} is not a known IANA time zone (such as UTC or Europe/Paris)") from None
