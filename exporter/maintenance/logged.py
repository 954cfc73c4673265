"""Operations kept in the operations log (`store.oplog`): who ran what, when, with which arguments, and what it did.

`logged(...)` wraps one operation: the caller fills the yielded counts; the entry is appended when the operation
ends, as `done`, `dry_run`, or `failed` (with the error) when it raised.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..store import Forgotten, Operation, Store, StoreError

SERVE = "serve"


def command_actor() -> str:
    """Who runs a command: `user@host`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@contextmanager
def logged(
    store: Store, kind: str, actor: str, arguments: Mapping[str, Any], *, dry_run: bool = False
) -> Iterator[dict[str, int]]:
    """Runs the body as one logged operation; yields the counts dict the body fills."""
    counts: dict[str, int] = {}
    started = time.time_ns()
    try:
        yield counts
    except BaseException as error:
        message = str(error) or type(error).__name__
        with contextlib.suppress(StoreError):  # the store may be what failed: the error itself goes on
            store.log_operation(Operation(started, kind, actor, arguments, "failed", counts, message))
        raise
    store.log_operation(Operation(started, kind, actor, arguments, "dry_run" if dry_run else "done", counts))


def forget_user(store: Store, user: str, actor: str, *, dry_run: bool = False) -> Forgotten:
    """Forgets `user` (`Store.forget_user`), logged."""
    if not user or "\x00" in user:
        raise ValueError("the user to forget must be a non-empty id without NUL characters")
    with logged(store, "forget", actor, {"user": user, "dry_run": dry_run}, dry_run=dry_run) as counts:
        forgotten = store.forget_user(user, dry_run=dry_run)
        counts.update(forgotten.counts())
    return forgotten
