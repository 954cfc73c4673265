"""Maintenance works one UTC day per transaction: short locks for the receiver, progress a user can follow."""

from __future__ import annotations

from ..store.rollup import DAY_NS


def floor_day(time_ns: int) -> int:
    return time_ns - time_ns % DAY_NS


def days(start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """[start_ns, end_ns) cut at UTC midnights."""
    out = []
    t = start_ns
    while t < end_ns:
        nxt = min(floor_day(t) + DAY_NS, end_ns)
        out.append((t, nxt))
        t = nxt
    return out
