"""The instrumentation's shared state: settings, telemetry handles, and which hooks are on.

The HTTP-client hook is installed while any llmtally instrumentor is on (the SDK hooks read bodies through it);
calls that no SDK hook opened are recorded only while `llmtally_http` is on. Hard-budget enforcement (see
`budgets`) starts with the first hook on and stops with the last one off.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from . import budgets as budget_state
from .settings import Settings
from .telemetry import Telemetry


@dataclass
class Runtime:
    settings: Settings
    telemetry: Telemetry
    users: set[str] = field(default_factory=set)
    budgets: budget_state.Enforcer | None = None  # None when enforcement is off

    @property
    def records_plain_http(self) -> bool:
        return "http" in self.users


_lock = threading.Lock()
_current: Runtime | None = None


def get() -> Runtime | None:
    """The active runtime, or None when nothing is instrumented."""
    return _current


def activate(user: str, **kwargs: Any) -> Runtime:
    """Turns on hook `user` ("openai", "anthropic", "http"), with the providers and settings in `kwargs`."""
    global _current
    from .http import hooks

    with _lock:
        providers = {k: kwargs.get(k) for k in ("tracer_provider", "meter_provider", "logger_provider")}
        overrides = {k: v for k, v in kwargs.items() if k in Settings.__dataclass_fields__}
        if _current is None or any(providers.values()) or overrides:
            users = _current.users if _current is not None else set()
            settings = Settings.from_env(**overrides)
            enforcer = budget_state.configure(settings, providers["meter_provider"])
            _current = Runtime(settings, Telemetry(**providers), users, enforcer)
        _current.users.add(user)
        hooks.install()
        return _current


def deactivate(user: str) -> None:
    """Turns hook `user` off; the last one off removes the HTTP hook and the runtime."""
    global _current
    from .http import hooks

    with _lock:
        if _current is None:
            return
        _current.users.discard(user)
        if not _current.users:
            hooks.uninstall()
            budget_state.shutdown()
            _current = None
