"""Configuration reload without a restart: on SIGHUP, and when `llmtally.yaml` changes (its modification time, size
and inode polled every `reload.poll_seconds`).

Any part of the receiver that takes a new configuration registers once with `on_reload(name, prepare)`. A reload
reads the file again (`config.load`) and calls every `prepare(new_config)`: it checks its sections and either raises
`ConfigError` (the message names the key) or returns an `apply()` that switches to them (and may return counts for
the log). Only when every part prepared without error are the `apply()`s called, in registration order: a bad file
is refused as a whole, logged on stderr, and the previous configuration stays in force. Each reload is kept in the
operations log (kind `reload`, actor `serve`). Keys no part registered for (listeners, store, tokens, TLS, ...)
take effect at the next start.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .config import Config, ConfigError, load
from .store import Operation, Store, StoreError

Apply = Callable[[], Mapping[str, int] | None]
Prepare = Callable[[Config], Apply]


@dataclass(frozen=True)
class _Part:
    name: str
    prepare: Prepare


_PARTS: list[_Part] = []


def on_reload(name: str, prepare: Prepare) -> None:
    """Registers a part that follows configuration reloads: `prepare(config)` checks the new configuration (raising
    ConfigError to refuse it) and returns the `apply()` that puts it in force (returning counts for the operations
    log, or None). `name` names the part in log lines."""
    _PARTS.append(_Part(name, prepare))


def registered() -> tuple[str, ...]:
    return tuple(p.name for p in _PARTS)


def _log(message: str) -> None:
    print(f"llmtally serve: {message}", file=sys.stderr, flush=True)


def reload(path: str, store: Store | None, trigger: str) -> bool:
    """Reads `path` again and applies it to every registered part, or to none; True when applied."""
    started = time.time_ns()
    arguments = {"path": path, "trigger": trigger}
    counts: dict[str, int] = {}
    try:
        config = load(path)
        applies = []
        for part in _PARTS:
            try:
                applies.append(part.prepare(config))
            except ConfigError as error:
                raise ConfigError(f"{part.name}: {error}") from error
    except ConfigError as error:
        _log(f"reload ({trigger}) refused, the previous configuration stays in force: {path}: {error}")
        _record(store, Operation(started, "reload", "serve", arguments, "failed", counts, str(error)))
        return False
    for apply in applies:
        counts.update(apply() or {})
    _log(f"reloaded {path} ({trigger}): {', '.join(registered()) or 'nothing registered'}")
    _record(store, Operation(started, "reload", "serve", arguments, "done", counts))
    return True


def _record(store: Store | None, operation: Operation) -> None:
    if store is None:
        return
    try:
        store.log_operation(operation)
    except StoreError as error:  # the reload itself is done (or refused); only its log entry is missing
        _log(f"could not write the reload to the operations log: {error}")


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class Watcher:
    """Reloads `path` on SIGHUP and, with `poll_s` > 0, when the file changes; on its own thread."""

    def __init__(self, path: str | None, store: Store | None, poll_s: float) -> None:
        self._path = path
        self._store = store
        self._poll_s = poll_s
        self._hup = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmtally-reload", daemon=True)

    def start(self) -> Watcher:
        """Starts watching; installs the SIGHUP handler (call from the main thread)."""
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self._wake())
        self._thread.start()
        return self

    def _wake(self) -> None:
        self._hup.set()

    def _loop(self) -> None:
        seen = _stamp(self._path) if self._path else None
        wait = self._poll_s if self._poll_s > 0 and self._path else None
        while not self._stop.is_set():
            hup = self._hup.wait(wait)
            if self._stop.is_set():
                break
            self._hup.clear()
            if self._path is None:
                _log("SIGHUP: no configuration file to reload (start serve with --config or ./llmtally.yaml)")
                continue
            now = _stamp(self._path)
            if hup or now != seen:
                seen = now
                reload(self._path, self._store, "SIGHUP" if hup else "file changed")

    def close(self) -> None:
        self._stop.set()
        self._hup.set()
        if self._thread.is_alive():
            self._thread.join()
