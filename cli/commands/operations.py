"""`llmtally forget | operations`: erase one user from their records; read the operations log."""

from __future__ import annotations

import argparse

from llmtally.exporter.maintenance.logged import command_actor, forget_user

from .options import open_from, print_json
from .tables import Column, money, show, text


def forget(args: argparse.Namespace) -> int:
    with open_from(args) as store:
        forgotten = forget_user(store, args.user, command_actor(), dry_run=args.dry_run)
    result = {"user": args.user, "dry_run": args.dry_run, **forgotten.counts()}
    if args.json:
        print_json(result)
    else:
        verb = "Would erase" if args.dry_run else "Erased"
        print(
            f"{verb} {args.user!r} from {forgotten.records:,} records ({forgotten.payloads:,} with payloads); "
            f"their cost {money(forgotten.customer_cost_nusd / 1e9)} stays in the totals, under no user."
        )
    return 0


_LOG: list[Column] = [
    ("id", "id", text),
    ("time", "time", text),
    ("kind", "kind", text),
    ("who", "actor", text),
    ("arguments", "arguments", text),
    ("outcome", "outcome", text),
    ("counts", "counts", text),
    ("message", "message", text),
]


def _flat(values: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def operations(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ValueError("--limit must be at least 1")
    with open_from(args) as store:
        entries = [e.as_json() for e in store.operations(args.limit, args.before, args.kind)]
    if args.json:
        print_json(entries)
        return 0
    rows = [{**e, "arguments": _flat(e["arguments"]), "counts": _flat(e["counts"])} for e in entries]
    more = f"more: llmtally operations --before {entries[-1]['id']}" if len(entries) == args.limit else None
    show("Operations, newest first", rows, _LOG, more)
    return 0
