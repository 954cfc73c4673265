"""The instrumentation's shared state: settings, telemetry handles, which hooks are on, and how a hook opens a call.

Calls that no SDK hook opened are recorded by the HTTP-client hook only while `llmtally_http` is on. Hard-budget
enforcement (see `budgets`) starts with the first hook on and stops with the last one off.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import budgets as budget_state
from .apis.base import Endpoint, Request
from .budgets import BudgetError
from .call import LLMCall, run, run_async
from .safety import quiet
from .settings import Settings
from .telemetry import Telemetry

# How a hook opens the call of an SDK method call: (client, args, kwargs) -> the call, the refusal, or None.
OpenCall = Callable[[Any, tuple[Any, ...], dict[str, Any]], LLMCall | BudgetError | None]
Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]


@dataclass
class Runtime:
    settings: Settings
    telemetry: Telemetry
    users: set[str] = field(default_factory=set)
    budgets: budget_state.Enforcer | None = None  # None when enforcement is off

    @property
    def records_plain_http(self) -> bool:
        return "http" in self.users

    def open(
        self,
        endpoint: Endpoint,
        provider: str,
        request: Request,
        host: str,
        port: int | None,
        key: Callable[[], str | None],
        *,
        reads_http: bool = True,
    ) -> LLMCall | BudgetError:
        """A new call, or the error that refuses it when it is over a hard budget (nothing is sent then).

        `key` gives the provider key's id, computed only when a budget is scoped by API key."""
        enforcer = self.budgets
        if enforcer is not None and enforcer.armed:
            refused = enforcer.refusal(provider, request.model, request.user, self.settings.environment, key)
            if refused is not None:
                return refused
        return LLMCall(self.settings, self.telemetry, endpoint, provider, request, host, port, reads_http=reads_http)


_lock = threading.Lock()
_current: Runtime | None = None


def get() -> Runtime | None:
    """The active runtime, or None when nothing is instrumented."""
    return _current


def activate(user: str, **kwargs: Any) -> Runtime:
    """Turns on hook `user` ("openai", "anthropic", "google_genai", "botocore", "http"), with the providers and
    settings in `kwargs`."""
    global _current
    with _lock:
        providers = {k: kwargs.get(k) for k in ("tracer_provider", "meter_provider", "logger_provider")}
        overrides = {k: v for k, v in kwargs.items() if k in Settings.__dataclass_fields__}
        if _current is None or any(providers.values()) or overrides:
            users = _current.users if _current is not None else set()
            settings = Settings.from_env(**overrides)
            enforcer = budget_state.configure(settings, providers["meter_provider"])
            _current = Runtime(settings, Telemetry(**providers), users, enforcer)
        _current.users.add(user)
        return _current


def deactivate(user: str) -> bool:
    """Turns hook `user` off; True when it was the last one (the runtime is then gone)."""
    global _current
    with _lock:
        if _current is None:
            return True
        _current.users.discard(user)
        if _current.users:
            return False
        budget_state.shutdown()
        _current = None
        return True


def opened(open_call: OpenCall, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LLMCall | None:
    """The call `open_call` opens for an SDK method call, or None (no LLM call, or llmtally itself failed: the app's
    call goes on unrecorded). Raises only the `BudgetError` that refuses the call, decided inside `quiet()`."""
    found: LLMCall | BudgetError | None = None
    with quiet():
        found = open_call(instance, args, kwargs)
    if isinstance(found, BudgetError):
        raise found
    return found


def method_wrappers(open_call: OpenCall) -> tuple[Wrapper, Wrapper]:
    """wrapt wrappers for an SDK's sync and async methods that each make one LLM call: the method runs as the call
    `open_call` opens (the HTTP hook joins its attempts), or untouched when it opens none."""

    def sync_method(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = opened(open_call, instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        return run(call, wrapped, args, kwargs)

    async def async_method(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = opened(open_call, instance, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        return await run_async(call, wrapped, args, kwargs)

    return sync_method, async_method
