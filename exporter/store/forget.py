"""Forgetting one user: what identifies them or what they sent is erased from their records, in one transaction.

Their user id, captured prompts and completions, source IP and error messages (which may quote a request) are
cleared; what remains of each record (model, tokens, costs, times, status) is an anonymous request under no user.
Their share of every rollup moves to the empty user with them, so every report over any period (whole hours from
the rollups, partial hours from the records) and a later reprice still sum to the same requests, tokens and costs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..normalise.record import Record
from . import rollup
from .columns import COLUMN_LIST, row_to_record
from .rollup import RECORDS

if TYPE_CHECKING:
    from .sql import Transaction

ERASED = ("user_id", "input_messages", "output_messages", "source_ip", "error_message")


@dataclass(frozen=True)
class Forgotten:
    """What forgetting a user changes (or, for a dry run, would change)."""

    records: int  # records erased of the user
    payloads: int  # records among them that held captured prompts or completions
    provider_cost_nusd: int  # their cost, kept in every total, now under no user
    customer_cost_nusd: int

    def counts(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def summary(records: Sequence[Record]) -> Forgotten:
    return Forgotten(
        len(records),
        sum(r.input_messages is not None or r.output_messages is not None for r in records),
        sum(r.provider_cost_nusd or 0 for r in records),
        sum(r.customer_cost_nusd or 0 for r in records),
    )


def erased(record: Record) -> Record:
    """A copy of `record` without what `forget` erases."""
    copy = dataclasses.replace(record)
    for name in ERASED:
        setattr(copy, name, None)
    return copy


def select_sql(p: str) -> str:
    return f"SELECT {COLUMN_LIST} FROM {RECORDS} WHERE user_id = {p}"


def forget(tx: Transaction, p: str, user: str) -> Forgotten:
    """Erases `user` from their records and moves their rollup share to the empty user (the caller holds the
    rollups)."""
    records = [row_to_record(row) for row in tx.rows(select_sql(p), (user,))]
    if not records:
        return summary(records)
    anonymous = [erased(r) for r in records]
    for table, rows in rollup.write_rows(rollup.changes(anonymous, records)):
        tx.many(rollup.upsert_sql(table, p, checked=True), rows)
    start, end = rollup.emptied_range(records)
    for table in rollup.ROLLUPS:
        tx.run(rollup.emptied_sql(table, p), (start, end))
    tx.run(f"UPDATE {RECORDS} SET {', '.join(f'{c} = NULL' for c in ERASED)} WHERE user_id = {p}", (user,))
    return summary(records)
