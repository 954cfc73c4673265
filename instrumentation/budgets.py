"""Hard budgets enforced in the app: a call whose scope is over a hard budget is refused before it is sent.

The receiver computes spend; the app reads `GET {LLMTALLY_BUDGETS_URL}/api/v1/budgets` from a daemon thread every
`LLMTALLY_BUDGETS_REFRESH_SECONDS` and keeps the hard budgets that are exceeded, indexed by their scope keys. The
request path only reads that cache: nothing at all when enforcement is off or no hard budget is exceeded, else one
dict look-up per distinct set of scope keys. With `LLMTALLY_BUDGETS_FAIL=closed`, every call is refused while the
state is unknown or stale (no successful refresh for three intervals).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import attribution, semconv
from .telemetry import version

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation

    from .settings import Settings

log = logging.getLogger("llmtally.instrumentation.budgets")

PATH = "/api/v1/budgets"
FIRST_FETCH_TIMEOUT = 2.0
STALE_INTERVALS = 3
# Scope key -> the attribution attribute that gives its value.
_ATTRIBUTED = {
    "user": semconv.USER_ID,
    "feature": semconv.FEATURE,
    "department": semconv.DEPARTMENT,
    "environment": semconv.ENVIRONMENT,
}


class BudgetError(Exception):
    """An LLM call refused by llmtally's budget enforcement; it was never sent to the provider."""


class BudgetExceeded(BudgetError):
    """The call is in the scope of a hard budget whose spend in the current period reached its limit."""

    def __init__(self, budget: str, period: str, limit_usd: float, spent_usd: float) -> None:
        self.budget, self.period, self.limit_usd, self.spent_usd = budget, period, limit_usd, spent_usd
        super().__init__(
            f"llmtally budget {budget!r} ({period}, hard) is exceeded: spent ${spent_usd:,.4f} of ${limit_usd:,.4f};"
            " the call was not sent"
        )

    def __reduce__(self) -> tuple[type[BudgetExceeded], tuple[str, str, float, float]]:
        return type(self), (self.budget, self.period, self.limit_usd, self.spent_usd)


class BudgetStateUnavailable(BudgetError):
    """Enforcement fails closed and the budget state is unknown or stale: every call is refused."""


@dataclass(frozen=True, slots=True)
class Budget:
    """A hard budget that is exceeded, as the receiver reported it."""

    name: str
    period: str
    limit_usd: float
    spent_usd: float

    def error(self) -> BudgetExceeded:
        return BudgetExceeded(self.name, self.period, self.limit_usd, self.spent_usd)


# (scope keys, {scope values: budget}) for each distinct set of scope keys, in the receiver's order.
Index = tuple[tuple[tuple[str, ...], dict[tuple[str | None, ...], Budget]], ...]


def parse(payload: bytes) -> Index:
    """The index of exceeded hard budgets in a `/api/v1/budgets` answer; ValueError for anything else."""
    doc = json.loads(payload)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("budgets"), list):
        raise ValueError("not a budgets document (no budgets list)")
    tables: dict[tuple[str, ...], dict[tuple[str | None, ...], Budget]] = {}
    for item in doc["budgets"]:
        if not isinstance(item, Mapping):
            raise ValueError("a budget is not an object")
        if item.get("mode") != "hard" or item.get("exceeded") is not True:
            continue
        scope = item.get("scope") or {}
        if not isinstance(scope, Mapping):
            raise ValueError(f"budget {item.get('name')!r}: scope is not an object")
        keys = tuple(sorted(str(k) for k in scope))
        values: tuple[str | None, ...] = tuple(str(scope[k]) for k in keys)
        budget = Budget(
            str(item.get("name", "")),
            str(item.get("period", "")),
            float(item.get("limit_usd", 0.0)),
            float(item.get("spent_usd", 0.0)),
        )
        tables.setdefault(keys, {}).setdefault(values, budget)
    return tuple(tables.items())


@dataclass(frozen=True)
class Config:
    """Where the budget state comes from and what to do without it."""

    url: str
    token: str | None = None
    refresh_seconds: float = 15.0
    fail_closed: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Config | None:
        if not settings.budgets_url:
            return None
        base = settings.budgets_url.strip().rstrip("/")
        url = base if base.endswith(PATH) else base + PATH
        fail = (settings.budgets_fail or "open").strip().lower()
        if fail not in ("open", "closed"):
            log.warning("llmtally budgets: LLMTALLY_BUDGETS_FAIL=%r is neither open nor closed; failing open", fail)
        refresh = max(0.05, float(settings.budgets_refresh_seconds))
        return cls(url, settings.api_token or None, refresh, fail == "closed")


class Metrics:
    """`completion.budget.refusals` and `completion.budget.state_ok`, one set per meter provider."""

    def __init__(self, meter: Any) -> None:
        self.refusals = meter.create_counter(
            "completion.budget.refusals", "{request}", "LLM calls refused by budget enforcement"
        )
        meter.create_observable_gauge(
            "completion.budget.state_ok", [_observe_state], "1", "1 when the last budget state refresh succeeded"
        )


_metrics: weakref.WeakKeyDictionary[Any, Metrics] = weakref.WeakKeyDictionary()
_metrics_lock = threading.Lock()


def _metrics_for(meter_provider: Any) -> Metrics:
    from opentelemetry import metrics

    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _metrics_lock:
        found = _metrics.get(provider)
        if found is None:
            meter = metrics.get_meter(semconv.INSTRUMENTATION_SCOPE, version(), meter_provider)
            found = _metrics[provider] = Metrics(meter)
        return found


def _observe_state(options: CallbackOptions) -> Iterable[Observation]:
    from opentelemetry.metrics import Observation

    enforcer = _active
    if enforcer is None:
        return []
    return [Observation(1 if enforcer.state_ok else 0)]


class Enforcer:
    """The cached budget state, its refresh thread, and the check every call goes through."""

    def __init__(self, config: Config, meters: Metrics) -> None:
        self.config = config
        self.metrics = meters
        self.fail_closed = config.fail_closed
        self.index: Index = ()
        self.ok_at: float | None = None  # monotonic time of the last successful refresh
        self._failing: bool | None = None  # None until the first refresh
        self._stale_after = STALE_INTERVALS * config.refresh_seconds
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state_ok(self) -> bool:
        """Whether the last refresh succeeded."""
        return self._failing is False

    @property
    def armed(self) -> bool:
        """Whether a call must be checked at all."""
        return self.fail_closed or bool(self.index)

    # The request path ----------------------------------------------------------------------------------------

    def refusal(
        self, provider: str, model: str, user: str | None, environment: str | None, key: Callable[[], str | None]
    ) -> BudgetError | None:
        """The error to refuse this call with, or None to let it through. Reads the cache only."""
        index = self.index
        if not self._fresh():
            if self.fail_closed:
                return self._refused(
                    BudgetStateUnavailable(
                        "llmtally budget state is unavailable and enforcement fails closed"
                        f" (LLMTALLY_BUDGETS_FAIL=closed; cannot read {self.config.url}); the call was not sent"
                    ),
                    "",
                    f"to {provider} {model}",
                )
            return None
        if not index:
            return None
        who = attribution.current()
        values: dict[str, str | None] = {k: who.get(attr) for k, attr in _ATTRIBUTED.items()}
        values["provider"], values["model"] = provider, model
        if semconv.USER_ID not in who:
            values["user"] = user
        if semconv.ENVIRONMENT not in who:
            values["environment"] = environment or None
        for keys, table in index:
            for name in keys:  # a custom dimension the receiver declares (`llmtally.attributes(team=...)`)
                if name not in values and name != "api_key":
                    values[name] = who.get(attribution.DIMENSION_PREFIX + name)
            if "api_key" in keys and "api_key" not in values:  # hashing the key only when a budget names one
                values["api_key"] = who[semconv.API_KEY] if semconv.API_KEY in who else key()
            budget = table.get(tuple(values.get(k) for k in keys))
            if budget is not None:
                return self._refused(budget.error(), budget.name, f"to {provider} {model}")
        return None

    def _fresh(self) -> bool:
        ok_at = self.ok_at
        return ok_at is not None and time.monotonic() - ok_at <= self._stale_after

    def _refused(self, error: BudgetError, budget: str, what: str) -> BudgetError:
        reason = "exceeded" if isinstance(error, BudgetExceeded) else "state_unavailable"
        self.metrics.refusals.add(1, {"budget": budget, "reason": reason})
        log.warning("llmtally refused a call %s: %s", what, error)
        return error

    # The refresh ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Reads the state once now (a short timeout), then every refresh interval in a daemon thread."""
        self.refresh(FIRST_FETCH_TIMEOUT)
        self._start_thread()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="llmtally-budgets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.config.refresh_seconds):
            self.refresh()

    def refresh(self, timeout: float | None = None) -> bool:
        """Fetches the state; True when it was read. Never raises."""
        with self._refresh_lock:
            try:
                index = parse(self._fetch(timeout or min(max(self.config.refresh_seconds, 1.0), 10.0)))
            except Exception as error:
                self._failed(error)
                return False
            self.index = index
            self.ok_at = time.monotonic()
            if self._failing:
                log.warning("llmtally budgets: budget state readable again from %s", self.config.url)
            self._failing = False
            return True

    def _failed(self, error: BaseException) -> None:
        if not self._failing:
            then = "every call is refused" if self.fail_closed else "calls go through"
            log.warning(
                "llmtally budgets: cannot read budget state from %s (%s: %s); once the cached state is stale, %s",
                self.config.url,
                type(error).__name__,
                error,
                then,
            )
        self._failing = True

    def _fetch(self, timeout: float) -> bytes:
        import urllib.request

        from opentelemetry.instrumentation.utils import suppress_instrumentation

        headers = {"Accept": "application/json", "User-Agent": "llmtally-instrumentation"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        request = urllib.request.Request(self.config.url, headers=headers)
        with suppress_instrumentation(), urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read()
            return body


_active: Enforcer | None = None


def active() -> Enforcer | None:
    """The running enforcer, or None when enforcement is off."""
    return _active


def configure(settings: Settings, meter_provider: Any = None) -> Enforcer | None:
    """Starts, keeps or stops enforcement for `settings` (called by the runtime under its lock)."""
    global _active
    config = Config.from_settings(settings)
    if config is None:
        shutdown()
        return None
    meters = _metrics_for(meter_provider)
    if _active is not None and _active.config == config:
        _active.metrics = meters
        return _active
    shutdown()
    enforcer = Enforcer(config, meters)
    enforcer.start()
    _active = enforcer
    return enforcer


def shutdown() -> None:
    """Stops the refresh thread (on uninstrument)."""
    global _active
    enforcer, _active = _active, None
    if enforcer is not None:
        enforcer.stop()


def _after_fork() -> None:
    """A forked worker has no refresh thread: start its own."""
    enforcer = _active
    if enforcer is not None:
        enforcer._refresh_lock = threading.Lock()
        enforcer._start_thread()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
