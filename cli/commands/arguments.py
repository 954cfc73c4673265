"""The arguments of `report`, `tail`, `forget` and `operations`: light imports only, so that `llmtally --help` and
`--version` work in an app's install without the `serve` extra (the commands themselves say they need it)."""

from __future__ import annotations

import argparse

from llmtally.exporter.api.params import GROUPS, LOG_STATUSES, TIME_GROUPS, USAGE_STATUSES
from llmtally.exporter.store.oplog import KINDS

from .options import add_filters, add_json, add_store

STATEMENT_FORMATS = ("table", "csv", "json", "html", "pdf")
_DIMENSIONS = [g for g in GROUPS if g not in TIME_GROUPS]


def add_report(parser: argparse.ArgumentParser) -> None:
    """`llmtally report`."""
    add_store(parser)
    period = parser.add_argument_group("period (give one; months, weeks and days in llmtally.yaml's timezone)")
    period.add_argument("--month", metavar="YYYY-MM", help="a calendar month, e.g. 2026-11")
    period.add_argument("--week", metavar="YYYY-Www", help="an ISO week (from Monday), e.g. 2026-W45")
    period.add_argument("--day", metavar="YYYY-MM-DD", help="one day")
    period.add_argument("--start", help="ISO 8601 date or date-time (with --end: any period)")
    period.add_argument("--end", help="ISO 8601 date (inclusive) or date-time (exclusive); default now")
    parser.add_argument(
        "--by",
        metavar="GROUPS",
        help=f"comma-separated dimensions to group by, among: {', '.join(_DIMENSIONS)} and the custom dimensions "
        "declared in llmtally.yaml (default: one total)",
    )
    add_filters(parser, USAGE_STATUSES)
    parser.add_argument(
        "--format",
        choices=STATEMENT_FORMATS,
        default="table",
        help="table (default, for people), csv, json, html (self-contained, with a chart) or pdf",
    )
    parser.add_argument("--json", action="store_true", help="the same as --format json")
    parser.add_argument("--output", "-o", metavar="FILE", help="file to write (default: stdout; pdf needs a file)")
    parser.add_argument("--title", default="Statement", help="the statement's title (default Statement)")
    parser.epilog = (
        "Filters keep the requests whose dimension has the value given (several values: comma-separated); --status "
        "success or error. Costs are USD with nine decimals (exact nano-USD in JSON); markup = customer cost - "
        "provider cost - fee, the fee being the fixed fee of the pricing in force per charged request. A statement "
        "of a closed period is kept the first time; a later one of the same period, grouping and filters says "
        "whether its figures changed and which records were repriced since."
    )


def add_tail(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`llmtally tail`."""
    tail = commands.add_parser(
        "tail", help="print requests live as a running receiver stores them (its /api/v1/requests/stream)"
    )
    tail.add_argument("--config", help="llmtally.yaml: the receiver's receiver.http address (default ./llmtally.yaml)")
    tail.add_argument(
        "--url",
        help="the receiver's base URL (default: receiver.http of the config, https with receiver.tls; else "
        "http://127.0.0.1:4318)",
    )
    tail.add_argument("--token", help="an API token (default $LLMTALLY_API_TOKEN); a member token sees their own")
    tail.add_argument("--count", type=int, metavar="N", help="stop after N requests (default: run until Ctrl-C)")
    add_filters(tail, LOG_STATUSES)
    tail.add_argument("--json", action="store_true", help="print one JSON object per line (the request-log row)")


def add_forget_and_operations(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`llmtally forget` and `llmtally operations`."""
    forget = commands.add_parser(
        "forget",
        help="erase one user from their records: user id, payloads, source IP, error messages (their totals stay, "
        "under no user)",
    )
    add_store(forget)
    forget.add_argument("--user", required=True, help="the user id to erase")
    forget.add_argument("--dry-run", action="store_true", help="count what would be erased, change nothing")
    add_json(forget)
    log = commands.add_parser("operations", help="the operations log: reprice, cleanup, forget, reload; newest first")
    add_store(log)
    log.add_argument("--kind", choices=KINDS, help="only this kind of operation")
    log.add_argument("--limit", type=int, default=50, help="entries to show (default 50)")
    log.add_argument("--before", type=int, metavar="ID", help="entries older than this id (the next page)")
    add_json(log)
