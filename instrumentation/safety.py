"""Instrumentation must never break the app: its own failures are logged at debug level and swallowed."""

from __future__ import annotations

import logging
from types import TracebackType

log = logging.getLogger("llmtally.instrumentation")


class _Quiet:
    """A reusable context manager that logs and swallows an `Exception` raised in its block (a class rather than
    a generator-based `contextmanager`: it runs on every call's hot path several times)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> bool:
        if kind is None or not issubclass(kind, Exception):
            return False
        log.debug("llmtally instrumentation failed; the call goes on unrecorded", exc_info=error)
        return True


_QUIET = _Quiet()


def quiet() -> _Quiet:
    """Runs the block; an exception from it is logged, not raised."""
    return _QUIET
