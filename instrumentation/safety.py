"""Instrumentation must never break the app: its own failures are logged at debug level and swallowed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("llmtally.instrumentation")


@contextmanager
def quiet() -> Iterator[None]:
    """Runs the block; an exception from it is logged, not raised."""
    try:
        yield
    except Exception:
        log.debug("llmtally instrumentation failed; the call goes on unrecorded", exc_info=True)
