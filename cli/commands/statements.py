"""`llmtally report`: a statement (chargeback) for a period and a grouping, as a table, CSV, JSON, HTML or PDF."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmtally.exporter.api.params import group_by

from .options import analytics_from, asked_filters, declared_dimensions, open_from, pricer_from, print_json
from .tables import Column, count, money, show, text

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
    from llmtally.exporter.reports import periods, render, statement

    fmt = "json" if args.json else args.format
    if fmt == "pdf" and not args.output:
        raise ValueError("--format pdf needs --output FILE")
    span = periods.period(args.month, args.week, args.day, args.start, args.end, analytics_from(args).timezone)
    names = group_by(args.by, declared_dimensions(args) if args.by else ())
    statement.check_groups(names)
    filters = asked_filters(args)
    pricer = pricer_from(args)
    with open_from(args) as store:
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
