"""`llmtally export | cleanup | reprice | price`: jobs over the stored records, with progress bars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import TextIO

from llmtally.exporter.api import export as exports
from llmtally.exporter.api.params import QueryError, instant, iso
from llmtally.exporter.api.reports import request_summary
from llmtally.exporter.config import load
from llmtally.exporter.maintenance import reprice as repricing
from llmtally.exporter.maintenance import retention
from llmtally.exporter.maintenance.logged import command_actor, logged
from llmtally.exporter.normalise.record import Record
from llmtally.exporter.price import Pricer, PricingConfig
from llmtally.exporter.store import open_store

from .options import asked, config_of, declared_dimensions, open_from, print_json
from .tables import Column, money, progress, show, text

Advance = Callable[[int], None]


def _bar(enabled: bool, description: str, total: int | None) -> AbstractContextManager[Advance]:
    return progress(description, total) if enabled else nullcontext(lambda n: None)


def _counted(records: Iterable[Record], advance: Advance) -> Iterator[Record]:
    for r in records:
        yield r
        advance(1)


def export(args: argparse.Namespace) -> int:
    span, filters = asked(args)
    with open_from(args) as store:
        total = filters.count(store, span) if args.output else None
        out: TextIO = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout  # noqa: SIM115
        try:
            with _bar(bool(args.output), f"exporting {args.format}", total) as advance:
                records = _counted(filters.records(store, span), advance)
                for chunk in exports.stream(records, args.format, args.payloads, declared_dimensions(args)):
                    out.write(chunk)
        finally:
            if out is not sys.stdout:
                out.close()
    if args.output:
        print(f"exported {total:,} requests to {args.output}", file=sys.stderr)
    return 0


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"{question} [y/N] no (not a terminal: pass --yes to confirm)", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


_SAMPLE: list[Column] = [
    ("time", "timestamp", text),
    ("id", "id", text),
    ("provider", "provider", text),
    ("model", "model", text),
    ("user", "user", text),
    ("cost", "customer_cost_usd", money),
]


def cleanup(args: argparse.Namespace) -> int:
    what = "drop the captured payloads of" if args.payloads_only else "delete"
    with open_from(args) as store:
        todo = retention.plan(store, args.days, payloads_only=args.payloads_only)
        summary = {
            "cutoff": iso(todo.cutoff_ns),
            "records": todo.records,
            "days": len(todo.days),
            "payloads_only": todo.payloads_only,
            "dry_run": args.dry_run,
        }
        if not todo.records:
            with logged(store, "cleanup", command_actor(), _cleanup_arguments(args), dry_run=args.dry_run) as counts:
                counts["records"] = 0
            print_json({**summary, "done": 0}) if args.json else print(f"No records older than {iso(todo.cutoff_ns)}.")
            return 0
        if args.dry_run:
            with logged(store, "cleanup", command_actor(), _cleanup_arguments(args), dry_run=True) as counts:
                counts["records"] = todo.records
            if args.json:
                print_json(summary)
            else:
                sample, _ = store.page(todo.selection, 5, newest_first=False)
                show(
                    f"Would {what} {todo.records:,} records older than {iso(todo.cutoff_ns)}; the oldest:",
                    [request_summary(r) for r in sample],
                    _SAMPLE,
                )
            return 0
        if not args.yes and not _confirm(
            f"{what.capitalize()} {todo.records:,} records older than {iso(todo.cutoff_ns)}?"
        ):
            print("Cancelled; nothing changed.", file=sys.stderr)
            return 1
        with (
            logged(store, "cleanup", command_actor(), _cleanup_arguments(args)) as counts,
            _bar(not args.json, what, len(todo.days)) as advance,
        ):
            done = retention.run(store, todo, lambda n: advance(1))
            counts["records"] = done
    if args.json:
        print_json({**summary, "done": done})
    else:
        print(f"Done: {what} {done:,} records older than {iso(todo.cutoff_ns)}.")
    return 0


def _cleanup_arguments(args: argparse.Namespace) -> dict[str, object]:
    return {"days": args.days, "payloads_only": args.payloads_only}


def reprice(args: argparse.Namespace) -> int:
    config = config_of(args)
    pricer = Pricer(PricingConfig.from_dict(config.pricing))
    since = instant(args.since, "--since")
    until = instant(args.until, "--until") if args.until else None
    if until is not None and until <= since:
        raise QueryError("--until must be after --since")
    arguments = {"since": iso(since), "until": iso(until) if until is not None else None}
    with (
        open_store(config.store) as store,
        logged(store, "reprice", command_actor(), arguments) as counts,
        _bar(not args.json, "repricing days", None) as advance,
    ):
        outcome = repricing.reprice(store, pricer, since, until, lambda n: advance(1))
        counts.update(days=outcome.examined_days, changed=outcome.changed)
    result = {"since": iso(since), "days": outcome.examined_days, "changed": outcome.changed}
    if args.json:
        print_json(result)
    else:
        print(
            f"Repriced {outcome.changed:,} records over {outcome.examined_days} days since {iso(since)}; "
            "each keeps its previous price in its events."
        )
    return 0


def price(args: argparse.Namespace) -> int:
    config = load(args.config)
    pricer = Pricer(PricingConfig.from_dict(config.pricing))
    when = datetime.fromtimestamp(instant(args.at, "--at") / 1e9, UTC) if args.at else None
    info = pricer.lookup(args.provider, args.model, when)
    if info is None:
        print(
            f"llmtally price: no price known for {args.model!r}; add it under pricing.overrides in llmtally.yaml",
            file=sys.stderr,
        )
        return 1
    data = info.as_json()
    if args.json:
        print_json(data)
        return 0
    rows = [{"field": k, "value": v} for k, v in data.items() if k != "tiers"]
    rows += [
        {"field": f"{name} above {start:,} input tokens", "value": str(per_mtok)}
        for name, start, per_mtok in info.tiers
    ]
    show(f"Price of {args.model} (USD per million tokens)", rows, [("field", "field", text), ("value", "value", text)])
    return 0
