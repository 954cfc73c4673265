"""`llmtally usage | requests | errors | insights | health`: the API's reports, as tables or --json."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from llmtally.exporter.api import reports
from llmtally.exporter.api.health import health as health_report
from llmtally.exporter.api.params import Filters, TimeRange, check_buckets, group_by
from llmtally.exporter.store import Store

from .options import analytics_from, asked, declared_dimensions, open_from, pricer_from, print_json
from .tables import Column, count, millis, money, percent, show, text

_FIGURES: list[Column] = [
    ("requests", "requests", count),
    ("errors", "error_rate", percent),
    ("input", "input_tokens", count),
    ("cached", "cached_tokens", count),
    ("output", "output_tokens", count),
    ("reasoning", "reasoning_tokens", count),
    ("provider cost", "provider_cost_usd", money),
    ("cost", "customer_cost_usd", money),
    ("unpriced", "unpriced_requests", count),
    ("avg latency", "avg_latency_ms", millis),
    ("cost/request", "avg_cost_per_request_usd", money),
    ("cost/1k tokens", "cost_per_1k_tokens_usd", money),
    ("members", "active_members", count),
]


def _report(
    args: argparse.Namespace, build: Callable[[Store, TimeRange, Filters], dict[str, Any]]
) -> dict[str, Any] | None:
    """The report for the command's range and filters; printed as JSON (and None returned) with --json."""
    span, filters = asked(args)
    with open_from(args) as store:
        report = build(store, span, filters)
    if args.json:
        print_json(report)
        return None
    return report


def _period(report: dict[str, Any]) -> str:
    span = report["range"]
    return f"{span['start']} .. {span['end']} ({span['name']})"


def usage(args: argparse.Namespace) -> int:
    names = group_by(args.by, declared_dimensions(args))
    zone = analytics_from(args).timezone

    def build(store: Store, span: TimeRange, filters: Filters) -> dict[str, Any]:
        check_buckets(span, names)
        return reports.usage(store, span, filters, names, zone)

    report = _report(args, build)
    if report is None:
        return 0
    columns: list[Column] = [(g, g, text) for g in names]
    rows = report["rows"]
    if names:
        rows = [*rows, {names[0]: "total", **report["totals"]}]
    show(f"Usage {_period(report)}", rows if names else [report["totals"]], [*columns, *_FIGURES])
    return 0


_LOG: list[Column] = [
    ("time", "timestamp", text),
    ("id", "id", text),
    ("provider", "provider", text),
    ("model", "model", text),
    ("status", "status", text),
    ("http", "http_status", text),
    ("error", "error_type", text),
    ("user", "user", text),
    ("feature", "feature", text),
    ("in", "input_tokens", count),
    ("out", "output_tokens", count),
    ("cost", "customer_cost_usd", money),
    ("latency", "latency_ms", millis),
]


def requests(args: argparse.Namespace) -> int:
    with open_from(args) as store:
        if args.id:
            record = store.get(args.id)
            if record is None:
                print(f"llmtally requests: no request {args.id!r}")
                return 1
            detail = reports.request_detail(record)
            if args.json:
                print_json(detail)
            else:
                show(
                    f"Request {args.id}",
                    [{"field": k, "value": v} for k, v in detail.items()],
                    [("field", "field", text), ("value", "value", text)],
                )
            return 0
        span, filters = asked(args)
        page = reports.request_log(store, span, filters, args.limit, args.cursor, args.sort)
    if args.json:
        print_json(page)
        return 0
    more = f"more: llmtally requests --cursor {page['next_cursor']} ..." if page["next_cursor"] else None
    order = "newest first" if page["sort"] == "-time" else f"sorted by {page['sort']}"
    show(f"Requests {_period(page)}, {order}", page["requests"], _LOG, caption=more)
    return 0


def errors(args: argparse.Namespace) -> int:
    report = _report(args, reports.errors)
    if report is None:
        return 0
    title = (
        f"Errors {_period(report)}: {report['total_errors']:,} of {report['total_requests']:,} requests "
        f"({report['error_rate'] * 100:.1f}%)"
    )
    show(title, report["by_type"], [("type", "type", text), ("count", "count", count)])
    for name in ("model", "provider"):
        show(
            f"Errors by {name}",
            report[f"by_{name}"],
            [
                (name, name, text),
                ("errors", "errors", count),
                ("requests", "requests", count),
                ("error rate", "error_rate", percent),
            ],
        )
    return 0


def insights(args: argparse.Namespace) -> int:
    pricer = pricer_from(args)
    report = _report(args, lambda store, span, filters: reports.insights(store, span, filters, pricer=pricer))
    if report is None:
        return 0
    trend = report["trend"]
    change = "n/a" if trend["percentage"] is None else f"{trend['percentage']:+.1f}%"
    summary = [
        {"figure": "total cost", "value": money(report["total_cost_usd"])},
        {"figure": "provider cost", "value": money(report["total_provider_cost_usd"])},
        {"figure": "requests", "value": count(report["requests"])},
        {"figure": "previous period", "value": money(trend["previous_cost_usd"])},
        {"figure": "trend", "value": f"{trend['direction']} {change}"},
        {"figure": "projected 30 days", "value": money(report["projected_30d_cost_usd"])},
        {"figure": "unpriced requests", "value": count(report["unpriced_requests"])},
    ]
    show(f"Cost insights {_period(report)}", summary, [("figure", "figure", text), ("value", "value", text)])
    show(
        "Cost by operation",
        [{"operation": k, "cost": v} for k, v in report["cost_by_operation"].items()],
        [("operation", "operation", text), ("cost", "cost", money)],
    )
    for name, rows in report["top_cost_drivers"].items():
        show(
            f"Top {name}s by cost",
            rows,
            [(name, name, text), ("cost", "cost_usd", money), ("requests", "requests", count)],
        )
    show(
        "Savings advice (provider cost, estimated from this period's usage and the genai-prices catalog)",
        [{**item, "suggestion": item.get("suggested_model", "")} for item in report["savings"]],
        [
            ("advice", "kind", text),
            ("provider", "provider", text),
            ("model", "model", text),
            ("suggestion", "suggestion", text),
            ("saving", "estimated_saving_usd", money),
        ],
    )
    for line in report["recommendations"]:
        print(f"- {line}")
    return 0


def health(args: argparse.Namespace) -> int:
    bounds = analytics_from(args).health
    report = _report(args, lambda store, span, filters: health_report(store, span, filters, bounds))
    if report is None:
        return 0
    for entries in (report["providers"], report["models"]):
        for entry in entries:
            error = entry["last_error"]
            entry["error"] = (
                f"{error['time']} {error['type'] or 'unknown'}: {error['message'] or ''}" if error else None
            )
    figures: list[Column] = [
        ("requests", "requests", count),
        ("errors", "errors", count),
        ("success", "success_rate", percent),
        ("avg latency", "avg_latency_ms", millis),
        ("avg ttft", "avg_ttft_ms", millis),
        ("last used", "last_used", text),
        ("last error", "error", text),
        ("health", "health", text),
    ]
    bounds_text = (
        f"critical from {bounds.critical_errors} errors, warning from {bounds.warning_errors}, "
        f"healthy from {bounds.healthy_success_rate:.0%} success, else degraded"
    )
    show(f"Provider health {_period(report)}", report["providers"], [("provider", "provider", text), *figures])
    show(
        "Model health",
        report["models"],
        [("provider", "provider", text), ("model", "model", text), *figures],
        caption=bounds_text,
    )
    return 0
