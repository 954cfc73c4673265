"""`llmtally report`: a statement (chargeback) for a period and a grouping, as a table, CSV, JSON, HTML or PDF."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmtally.exporter.api.params import GROUPS, USAGE_STATUSES, group_by

from .options import add_filters, add_store, analytics_from, asked_filters, declared_dimensions, print_json
from .tables import Column, count, money, show, text

_DIMENSIONS = [g for g in GROUPS if g not in ("hour", "day")]
FORMATS = ("table", "csv", "json", "html", "pdf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        choices=FORMATS,
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


_FIGURES: list[Column] = [
    ("requests", "requests", count),
    ("input", "input_tokens", count),
    ("output", "output_tokens", count),
    ("cached", "cached_tokens", count),
    ("provider cost", "provider_cost_usd", money),
    ("markup", "markup_usd", money),
    ("fee", "fee_usd", money),
    ("customer cost", "customer_cost_usd", money),
    ("unpriced", "unpriced_requests", count),
]


def report(args: argparse.Namespace) -> int:
    from llmtally.exporter.config import load
    from llmtally.exporter.price import Pricer, PricingConfig
    from llmtally.exporter.reports import periods, render, statement
    from llmtally.exporter.store import open_store

    fmt = "json" if args.json else args.format
    if fmt == "pdf" and not args.output:
        raise ValueError("--format pdf needs --output FILE")
    span = periods.period(args.month, args.week, args.day, args.start, args.end, analytics_from(args).timezone)
    names = group_by(args.by, declared_dimensions(args) if args.by else ())
    statement.check_groups(names)
    filters = asked_filters(args)
    config = load(args.config, store=args.store)
    pricer = Pricer(PricingConfig.from_dict(config.pricing))
    with open_store(config.store) as store:
        body = statement.build(store, span, filters, names, pricer.fee_nusd, title=args.title)
    if fmt == "table":
        columns: list[Column] = [(g, g, text) for g in names]
        rows = [*body["rows"], {**({names[0]: "total"} if names else {}), **body["totals"]}]
        show(
            f"{body['title']} {span.name} ({body['period']['start']} .. {body['period']['end']})",
            rows,
            [*columns, *_FIGURES],
        )
        sources = "; ".join(f"{s} ({n})" for s, n in body["totals"]["price_sources"].items())
        print(f"price sources: {sources or '-'}")
        if body["comparison"]:
            print(body["comparison"]["message"])
        return 0
    if fmt == "json" and not args.output:
        print_json(body)
        return 0
    data = render.render(body, fmt)
    if args.output:
        Path(args.output).write_bytes(data)
        print(
            f"wrote {args.output} ({body['comparison']['message'] if body['comparison'] else 'not kept'})",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(data.decode())
    return 0
