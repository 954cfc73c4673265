"""The `reports:` section of llmtally.yaml: named statements produced on a schedule and delivered to a directory, a
webhook or e-mail. A bad entry is refused by key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from ..api.params import FILTERS, QueryError, group_by
from ..config import Config, ConfigError, checked_mapping, checked_text
from .periods import KINDS, Kind
from .render import FORMATS
from .statement import check_groups

SCHEDULES = ("monthly", "weekly", "daily")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PERIODS = {f"previous_{kind}": kind for kind in KINDS}
_DEFAULT_PERIOD: dict[str, Kind] = {"monthly": "month", "weekly": "week", "daily": "day"}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_AT = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_REPORT_KEYS = frozenset({"name", "schedule", "day", "at", "period", "by", "filters", "formats", "title", "deliver"})
_DELIVER_KEYS = frozenset({"directory", "webhook", "email"})
_WEBHOOK_KEYS = frozenset({"url", "timeout_seconds", "retries", "headers"})
_EMAIL_KEYS = frozenset(
    {"host", "port", "from", "to", "starttls", "ca_file", "username_env", "password_env", "timeout_seconds", "retries"}
)


@dataclass(frozen=True)
class Webhook:
    url: str
    timeout_seconds: float = 10.0
    retries: int = 3  # attempts after the first
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Email:
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 25
    starttls: bool = False
    username_env: str | None = None  # names of environment variables holding the SMTP credentials
    password_env: str | None = None
    timeout_seconds: float = 30.0
    retries: int = 3
    ca_file: str | None = None  # STARTTLS: trust this CA (PEM) instead of the system's


@dataclass(frozen=True)
class ReportConfig:
    """One scheduled report: when (`schedule` monthly/weekly/daily on `day` at `at` UTC, or a cron expression), which
    period (the whole previous month, week or day before the scheduled time), grouping, filters, formats, where to."""

    name: str
    schedule: str
    period: Kind
    day: int = 1  # monthly: day of the month; weekly: 0 (Monday) .. 6
    at: tuple[int, int] = (0, 0)
    by: tuple[str, ...] = ()
    filters: Mapping[str, str] = field(default_factory=dict)
    formats: tuple[str, ...] = ("html",)
    title: str = ""
    directory: str | None = None
    webhook: Webhook | None = None
    email: Email | None = None

    @property
    def is_cron(self) -> bool:
        return self.schedule not in SCHEDULES

    @property
    def targets(self) -> tuple[str, ...]:
        """The deliveries configured: directory, webhook, email."""
        return tuple(t for t in ("directory", "webhook", "email") if getattr(self, t) is not None)


def _number(value: Any, key: str, kind: type, low: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{key} must be a number, not {value!r}")
    if value < low:
        raise ConfigError(f"{key} must be at least {low}")
    return kind(value)


def _webhook(value: Any, key: str) -> Webhook:
    if isinstance(value, str):
        value = {"url": value}
    data = checked_mapping(value, key, _WEBHOOK_KEYS)
    url = checked_text(data.get("url"), f"{key}.url")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{key}.url must be an http:// or https:// URL, not {url!r}")
    headers = checked_mapping(
        data.get("headers") or {}, f"{key}.headers", frozenset(map(str, data.get("headers") or {}))
    )
    return Webhook(
        url,
        _number(data.get("timeout_seconds", 10.0), f"{key}.timeout_seconds", float, 0.1),
        _number(data.get("retries", 3), f"{key}.retries", int, 0),
        {str(k): checked_text(v, f"{key}.headers.{k}") for k, v in headers.items()},
    )


def _email(value: Any, key: str) -> Email:
    data = checked_mapping(value, key, _EMAIL_KEYS)
    to = data.get("to")
    recipients = [to] if isinstance(to, str) else to
    if not isinstance(recipients, list) or not recipients:
        raise ConfigError(f"{key}.to must be an address or a list of addresses")
    starttls = data.get("starttls", False)
    if not isinstance(starttls, bool):
        raise ConfigError(f"{key}.starttls must be true or false")
    user_env, password_env = data.get("username_env"), data.get("password_env")
    if (user_env is None) != (password_env is None):
        raise ConfigError(f"{key}: username_env and password_env go together")
    return Email(
        checked_text(data.get("host"), f"{key}.host"),
        checked_text(data.get("from"), f"{key}.from"),
        tuple(checked_text(t, f"{key}.to") for t in recipients),
        _number(data.get("port", 25), f"{key}.port", int, 1),
        starttls,
        None if user_env is None else checked_text(user_env, f"{key}.username_env"),
        None if password_env is None else checked_text(password_env, f"{key}.password_env"),
        _number(data.get("timeout_seconds", 30.0), f"{key}.timeout_seconds", float, 0.1),
        _number(data.get("retries", 3), f"{key}.retries", int, 0),
        None if data.get("ca_file") is None else checked_text(data["ca_file"], f"{key}.ca_file"),
    )


def _day(value: Any, key: str, schedule: str) -> int:
    if schedule == "weekly":
        if value is None:
            return 0
        if not isinstance(value, str) or value.lower() not in WEEKDAYS:
            raise ConfigError(f"{key} must be a weekday (monday .. sunday) for a weekly report, not {value!r}")
        return WEEKDAYS.index(value.lower())
    if schedule == "monthly":
        if value is None:
            return 1
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 28:
            raise ConfigError(f"{key} must be a day of the month from 1 to 28, not {value!r}")
        return value
    if value is not None:
        raise ConfigError(f"{key} goes with a monthly or weekly schedule only")
    return 1


def _report(entry: Any, key: str) -> ReportConfig:
    data = checked_mapping(entry, key, _REPORT_KEYS)
    name = checked_text(data.get("name"), f"{key}.name")
    if not _NAME.match(name):
        raise ConfigError(f"{key}.name must be 1-64 letters, digits, '_', '.' or '-', not {name!r}")
    where = f"reports.{name}"
    schedule = checked_text(data.get("schedule"), f"{where}.schedule")
    if schedule not in SCHEDULES and not croniter.is_valid(schedule):
        raise ConfigError(f"{where}.schedule must be monthly, weekly, daily or a cron expression, not {schedule!r}")
    period_name = data.get("period")
    if period_name is None:
        if schedule not in SCHEDULES:
            raise ConfigError(f"{where}.period is required with a cron schedule ({', '.join(PERIODS)})")
        period = _DEFAULT_PERIOD[schedule]
    elif period_name in PERIODS:
        period = PERIODS[period_name]
    else:
        raise ConfigError(f"{where}.period must be one of {', '.join(PERIODS)}, not {period_name!r}")
    at = data.get("at", "00:00")
    match = _AT.match(at) if isinstance(at, str) else None
    if match is None:
        raise ConfigError(f"{where}.at must be HH:MM (UTC), not {at!r}")
    if schedule not in SCHEDULES and "at" in data:
        raise ConfigError(f"{where}.at goes with monthly, weekly or daily; a cron expression says its own time")
    try:
        groups = group_by(data.get("by") if not isinstance(data.get("by"), list) else ",".join(data["by"]))
        check_groups(groups)
    except QueryError as error:
        raise ConfigError(f"{where}.by: {error}") from None
    filters = checked_mapping(data.get("filters") or {}, f"{where}.filters", frozenset([*FILTERS, "status"]))
    formats = data.get("formats", ["html"])
    formats = [formats] if isinstance(formats, str) else formats
    if not isinstance(formats, list) or not formats or any(f not in FORMATS for f in formats):
        raise ConfigError(f"{where}.formats must be a list among {', '.join(FORMATS)}, not {formats!r}")
    deliver = checked_mapping(data.get("deliver"), f"{where}.deliver", _DELIVER_KEYS)
    if not deliver:
        raise ConfigError(f"{where}.deliver needs directory, webhook or email")
    directory = deliver.get("directory")
    return ReportConfig(
        name=name,
        schedule=schedule,
        period=period,
        day=_day(data.get("day"), f"{where}.day", schedule),
        at=(int(match.group(1)), int(match.group(2))),
        by=tuple(groups),
        filters={str(k): checked_text(v, f"{where}.filters.{k}") for k, v in filters.items()},
        formats=tuple(dict.fromkeys(formats)),
        title=str(data.get("title") or name),
        directory=None if directory is None else checked_text(directory, f"{where}.deliver.directory"),
        webhook=None if deliver.get("webhook") is None else _webhook(deliver["webhook"], f"{where}.deliver.webhook"),
        email=None if deliver.get("email") is None else _email(deliver["email"], f"{where}.deliver.email"),
    )


def parse(section: Any) -> tuple[ReportConfig, ...]:
    """The `reports:` section (a list; None: none). Raises ConfigError naming the offending key."""
    if section is None:
        return ()
    if not isinstance(section, list):
        raise ConfigError("reports must be a list")
    reports = tuple(_report(entry, f"reports[{i}]") for i, entry in enumerate(section))
    names = [r.name for r in reports]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"reports: names must be unique, {', '.join(twice)} is given twice")
    return reports


def from_config(config: Config) -> tuple[ReportConfig, ...]:
    return parse(config.reports)
