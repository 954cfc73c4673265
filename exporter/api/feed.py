"""The live feed's engine: one thread per receiver reads the records stored after its position and hands each to the
subscribed streams (`/api/v1/requests/stream`), each through a bounded buffer.

It reads the store, not the receiver's own writer, so records that other replicas write count too: every
`poll_seconds` it asks for the records after its position, in insertion order (SQLite's rowid, PostgreSQL's `seq`),
never by time, so a record that arrives late (an old timestamp) is not skipped. On PostgreSQL positions are handed out
at insert and a transaction still in flight can commit after a later one: a position the feed passed without a
record is kept as a gap for `GAP_GRACE_S` and delivered when its record commits (an abandoned one, rolled back,
expires). An event's id is the feed's position after it (`Position`: the highest position delivered and the gaps
below it), so a client resuming with `Last-Event-ID` gets exactly what it has not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..normalise.record import Record
from ..store import Store, StoreError
from .params import FILTERS, Filters

GAP_GRACE_S = 30.0  # how long a passed position may still receive its record (a PostgreSQL transaction in flight)
SCAN = 2000  # positions looked at for gaps when the feed starts
PAGE = 1000  # records per read, at most
BURST_PAUSE_S = 0.05  # between the pages of a backlog
MAX_JUMP = 100_000  # a larger jump in positions is not tracked as gaps (a sequence that skipped ahead)
MAX_GAPS = 10_000  # gaps an event id may name
_POSITION = re.compile(r"^(\d{1,19})(?::(\d{1,19}(?:-\d{1,19})?(?:,\d{1,19}(?:-\d{1,19})?)*))?$")


class BadPosition(ValueError):
    """A Last-Event-ID this feed did not hand out."""


@dataclass(frozen=True)
class Position:
    """Every position up to `high` seen, but the `gaps`."""

    high: int
    gaps: frozenset[int] = frozenset()

    def encode(self) -> str:
        ranges = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges_of(self.gaps))
        return f"{self.high}:{ranges}" if ranges else str(self.high)

    @classmethod
    def decode(cls, text: str) -> Position:
        match = _POSITION.match(text.strip())
        if match is None:
            raise BadPosition(f"Last-Event-ID {text[:80]!r} is not an id this feed sent")
        high = int(match.group(1))
        gaps: set[int] = set()
        for item in (match.group(2) or "").split(",") if match.group(2) else ():
            first, _, last = item.partition("-")
            a, b = int(first), int(last or first)
            if not a <= b <= high or len(gaps) + b - a + 1 > MAX_GAPS:
                raise BadPosition(f"Last-Event-ID {text[:80]!r} is not an id this feed sent")
            gaps.update(range(a, b + 1))
        if high >= 2**63:
            raise BadPosition(f"Last-Event-ID {text[:80]!r} is not an id this feed sent")
        return cls(high, frozenset(gaps))

    def unseen(self, seq: int) -> bool:
        return seq > self.high or seq in self.gaps


def ranges_of(values: Iterable[int], join_within: int = 1) -> list[tuple[int, int]]:
    """Sorted values as inclusive ranges; values at most `join_within` apart share one."""
    out: list[list[int]] = []
    for v in sorted(values):
        if out and v - out[-1][1] <= join_within:
            out[-1][1] = v
        else:
            out.append([v, v])
    return [(a, b) for a, b in out]


@dataclass(frozen=True)
class StreamSettings:
    """`stream:` in llmtally.yaml."""

    max_clients: int = 16
    client_buffer_records: int = 1000
    poll_seconds: float = 0.5
    heartbeat_seconds: float = 15.0

    @classmethod
    def from_config(cls, config: Config) -> StreamSettings:
        return cls(
            config.stream_max_clients,
            max(config.stream_client_buffer_records, 1),
            max(config.stream_poll_seconds, 0.05),
            max(config.stream_heartbeat_seconds, 0.1),
        )


def _value(found: Any, key: str) -> Any:
    value = found.get(key) if isinstance(found, dict) else None
    return None if isinstance(value, (list, dict)) else value


def matcher(filters: Filters) -> Callable[[Record], bool]:
    """Whether a record matches `filters` (as the request log's selections do)."""
    equal = [(FILTERS[name], frozenset(values)) for name, values in filters.equal.items()]
    statuses = frozenset(filters.status)
    codes = frozenset(filters.http_status)
    objects = [(column, key, values) for (column, key), values in filters.json.items()]

    def status_ok(r: Record) -> bool:
        code = r.http_status or 0
        return (
            r.status in statuses
            or ("4xx" in statuses and 400 <= code < 500)
            or ("5xx" in statuses and 500 <= code < 600)
        )

    def json_ok(r: Record) -> bool:  # request parameters and custom dimensions (numbers compare as numbers)
        return all(_value(getattr(r, column), key) in values for column, key, values in objects)

    def matches(r: Record) -> bool:
        return (
            all(getattr(r, column, None) in values for column, values in equal)
            and (not statuses or status_ok(r))
            and (not codes or r.http_status in codes)
            and json_ok(r)
        )

    return matches


Item = tuple[int, Position, Record]


@dataclass(eq=False)
class Subscriber:
    """One stream: its filter, what it has seen already (`resumed`), its bounded buffer."""

    matches: Callable[[Record], bool]
    capacity: int
    resumed: Position | None = None
    dropped: bool = False
    _items: deque[Item] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: Callable[[], object] | None = None

    def offer(self, item: Item) -> bool:
        """Buffers `item` if it matches; False (and dropped) when the buffer is full. Any thread."""
        seq, _, record = item
        if (self.resumed is not None and not self.resumed.unseen(seq)) or not self.matches(record):
            return True
        with self._lock:
            if len(self._items) >= self.capacity:
                self.dropped = True
            else:
                self._items.append(item)
        self.notify()
        return not self.dropped

    def attach(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        """Wake `event` on `loop` when items arrive (or the stream is dropped)."""
        self._wake = lambda: loop.call_soon_threadsafe(event.set)
        self.notify()

    def notify(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the stream has ended
                self._wake()

    def take(self) -> list[Item]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items


class Full(Exception):
    """Every stream slot is taken."""


class Feed:
    """The receiver's live feed: polls `store` while streams are subscribed, fans records out to them."""

    def __init__(self, store: Store, settings: StreamSettings | None = None) -> None:
        self.store = store
        self.settings = settings or StreamSettings()
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._high = 0
        self._missing: dict[int, float] = {}
        self._gaps: frozenset[int] | None = frozenset()
        self._closing: Callable[[], bool] = lambda: False

    def stop_when(self, closing: Callable[[], bool]) -> None:
        """Streams end (cleanly) once `closing()` is true: the server is shutting down."""
        self._closing = closing

    @property
    def closing(self) -> bool:
        return self._closing()

    def position(self) -> Position:
        """Where the feed is (call with the lock held)."""
        if self._gaps is None:
            self._gaps = frozenset(self._missing)
        return Position(self._high, self._gaps)

    def subscribe(self, subscriber: Subscriber) -> Position:
        """Registers `subscriber` (starting the poller if needed) and returns the feed's position at that moment:
        what it delivers from now on comes after it. Raises Full past `max_clients`, StoreError."""
        with self._lock:
            if len(self._subscribers) >= self.settings.max_clients:
                raise Full(f"{self.settings.max_clients} live streams are open (stream.max_clients)")
            if self._thread is None:
                self._start()
            self._subscribers.add(subscriber)
            return self.position()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def _start(self) -> None:
        positions = self.store.last_positions(SCAN)
        self._high = positions[0] if positions else 0
        deadline = time.monotonic() + GAP_GRACE_S
        present = set(positions)
        low = positions[-1] if positions else 1
        self._missing = {p: deadline for p in range(low, self._high) if p not in present}
        self._gaps = None
        self._thread = threading.Thread(target=self._run, name="llmtally-live-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while True:
            with self._lock:
                if not self._subscribers:
                    self._thread = None
                    return
            more = False
            try:
                more = self._poll()
                failing = False
            except StoreError as error:
                if not failing:
                    message = f"llmtally serve: live feed: the store failed, retrying: {error}"
                    print(message, file=sys.stderr, flush=True)
                failing = True
            except Exception as error:  # a bug must not stop the feed for every stream: said, and tried again
                print(f"llmtally serve: live feed: {error!r}; retrying", file=sys.stderr, flush=True)
            time.sleep(BURST_PAUSE_S if more else self.settings.poll_seconds)

    def _poll(self) -> bool:
        """Delivers the records stored since the last poll (a page of them); True when there may be more."""
        with self._lock:
            high, missing = self._high, set(self._missing)
        found: list[tuple[int, Record]] = []
        for a, b in ranges_of(missing, join_within=64)[:100]:
            found += [(s, r) for s, r in self.store.records_after(a - 1, b - a + 1, b) if s in missing]
        # Half a client's buffer at a time, a moment apart, so a client that keeps up is never dropped by a burst.
        page = max(1, min(PAGE, self.settings.client_buffer_records // 2))
        new = self.store.records_after(high, page)
        with self._lock:
            now = time.monotonic()
            for seq, record in sorted(found, key=lambda f: f[0]):
                if self._missing.pop(seq, None) is not None:
                    self._gaps = None
                    self._emit((seq, self.position(), record))
            for seq, record in new:
                if seq <= self._high:
                    continue
                if seq - self._high <= MAX_JUMP:
                    for gap in range(self._high + 1, seq):
                        self._missing[gap] = now + GAP_GRACE_S
                        self._gaps = None
                self._high = seq
                self._emit((seq, self.position(), record))
            expired = [g for g, deadline in self._missing.items() if deadline < now]
            for g in expired:
                del self._missing[g]
                self._gaps = None
        return len(new) == page

    def _emit(self, item: Item) -> None:
        for subscriber in list(self._subscribers):
            if not subscriber.offer(item):
                self._subscribers.discard(subscriber)
                print(
                    f"llmtally serve: live feed: dropped a stream too slow to read ({subscriber.capacity} requests "
                    "waiting: stream.client_buffer_records)",
                    file=sys.stderr,
                    flush=True,
                )

    def catch_up(self, resumed: Position, now: Position) -> Iterable[tuple[Position, Record]]:
        """The records a client at `resumed` has not seen and the feed passed before `now` (its position when the
        client subscribed), with the event id after each, in order. Reads the store a page at a time."""
        waiting = now.gaps  # the feed delivers these itself when they arrive
        late = [g for g in resumed.gaps if g <= now.high and g not in waiting]
        pending = set(resumed.gaps) | set(waiting)
        found: list[tuple[int, Record]] = []
        for a, b in ranges_of(late, join_within=64):
            found += [(s, r) for s, r in self.store.records_after(a - 1, b - a + 1, b) if s in pending]
        for seq, record in found:
            pending.discard(seq)
            high = resumed.high
            yield Position(high, frozenset(g for g in pending if g <= high and (g in waiting or g in late))), record
        after = resumed.high
        while after < now.high:
            page = self.store.records_after(after, PAGE, now.high)
            for seq, record in page:
                if seq not in waiting:
                    yield Position(seq, frozenset(g for g in waiting if g <= seq)), record
            if len(page) < PAGE:
                break
            after = page[-1][0]
