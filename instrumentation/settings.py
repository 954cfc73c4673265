"""What the instrumentation does, from the environment and from `llmtally.instrument(...)` arguments."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_OFF = {"", "false", "0", "no", "off", "no_content", "none"}

# Secrets that must never leave the app even when content capture is on.
DEFAULT_REDACT_PATTERNS: tuple[str, ...] = (
    r"sk-[A-Za-z0-9_\-]{16,}",  # OpenAI / Anthropic style keys
    r"(?i)bearer\s+[A-Za-z0-9._\-]{16,}",
    r"AKIA[0-9A-Z]{16}",  # AWS access key ids
)


@dataclass(frozen=True)
class Settings:
    """Instrumentation settings; `from_env` reads the documented variables."""

    capture_content: bool = False
    capture_max_bytes: int = 16384
    redact_patterns: tuple[re.Pattern[str], ...] = field(default_factory=tuple)
    stream_usage: bool = True
    provider_hosts: Mapping[str, str] = field(default_factory=dict)
    environment: str | None = None
    budgets_url: str | None = None  # the receiver's HTTP base URL; hard budgets are enforced when set
    api_token: str | None = None  # a receiver API token (role app) for reading the budgets
    budgets_refresh_seconds: float = 15.0
    budgets_fail: str = "open"  # open | closed: what to do while the budget state is unknown

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from `env` (default `os.environ`); keyword `overrides` win over the environment."""
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "capture_content": env.get(CAPTURE_ENV, "").strip().lower() not in _OFF,
            "capture_max_bytes": _int(env.get("LLMTALLY_CAPTURE_MAX_BYTES"), 16384),
            "redact_patterns": _split(env.get("LLMTALLY_REDACT_PATTERNS", "")),
            "stream_usage": env.get("LLMTALLY_STREAM_USAGE", "true").strip().lower() not in _OFF,
            "provider_hosts": _hosts(env.get("LLMTALLY_PROVIDER_HOSTS", "")),
            "environment": env.get("LLMTALLY_ENVIRONMENT") or _resource_environment(env),
            "budgets_url": env.get("LLMTALLY_BUDGETS_URL", "").strip() or None,
            "api_token": env.get("LLMTALLY_API_TOKEN", "").strip() or None,
            "budgets_refresh_seconds": _float(env.get("LLMTALLY_BUDGETS_REFRESH_SECONDS"), 15.0),
            "budgets_fail": env.get("LLMTALLY_BUDGETS_FAIL", "").strip().lower() or "open",
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        patterns = values["redact_patterns"]
        assert isinstance(patterns, Sequence)
        values["redact_patterns"] = tuple(
            re.compile(p) if isinstance(p, str) else p for p in (*DEFAULT_REDACT_PATTERNS, *patterns)
        )
        hosts = values["provider_hosts"]
        assert isinstance(hosts, Mapping)
        values["provider_hosts"] = {str(k).lower(): str(v) for k, v in hosts.items()}
        return cls(**values)  # type: ignore[arg-type]


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value else default
    except ValueError:
        return default


def _float(value: str | None, default: float) -> float:
    try:
        number = float(value) if value else default
    except ValueError:
        return default
    return number if number > 0 else default


def _split(value: str) -> list[str]:
    """Patterns are separated by newlines or `;;` (a regex may contain a single `;`)."""
    return [p for p in re.split(r"\n|;;", value) if p.strip()]


def _hosts(value: str) -> dict[str, str]:
    """`host[:port]=provider` pairs separated by commas."""
    pairs = (item.split("=", 1) for item in value.split(",") if "=" in item)
    return {host.strip().lower(): name.strip() for host, name in pairs if host.strip() and name.strip()}


def _resource_environment(env: Mapping[str, str]) -> str | None:
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = item.partition("=")
        if key.strip() in ("deployment.environment.name", "deployment.environment") and value.strip():
            return value.strip()
    return None
