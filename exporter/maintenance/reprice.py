"""Re-pricing: recompute the costs of stored records after a price or override change.

Each changed record keeps its previous price in its events (`{"type": "repriced", ...}`), and the rollups of its day
are recomputed in the same transaction, so reports agree with the records at once. Prometheus counters of running
receivers are not rewritten (they count what was ingested).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..normalise.record import Record
from ..price import Pricer
from ..store import Store
from .days import days


@dataclass(frozen=True)
class Outcome:
    examined_days: int
    changed: int


def repricer(pricer: Pricer, now_ns: int | None = None) -> Callable[[Record], bool]:
    """A function that re-prices one record in place and says whether its price changed (then noting the old one
    in its events)."""
    at = time.time_ns() if now_ns is None else now_ns

    def reprice(record: Record) -> bool:
        before = (record.provider_cost_nusd, record.customer_cost_nusd, record.price_source, record.priced)
        pricer.price(record)
        after = (record.provider_cost_nusd, record.customer_cost_nusd, record.price_source, record.priced)
        if after == before:
            return False
        record.events.append(
            {
                "type": "repriced",
                "time_unix_nano": at,
                "previous_price_source": before[2],
                "previous_provider_cost_nusd": before[0],
                "previous_customer_cost_nusd": before[1],
                "price_source": after[2],
            }
        )
        return True

    return reprice


def reprice(
    store: Store,
    pricer: Pricer,
    since_ns: int,
    until_ns: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Re-prices the records starting in [since_ns, until_ns) (default: now), one UTC day per transaction; calls
    `progress(changed)` after each day."""
    end = time.time_ns() if until_ns is None else until_ns
    fn = repricer(pricer)
    ranges = days(since_ns, end)
    changed = 0
    for start, stop in ranges:
        n = store.reprice_between(start, stop, fn)
        changed += n
        if progress is not None:
            progress(n)
    return Outcome(len(ranges), changed)
