"""The reports: usage, request log, errors and cost insights, as JSON-ready dicts (health: health.py).

Every report reads the audit store through `Store.usage` (rollups) or `Store.page` (records); costs are given in
USD and, exactly, in nano-USD (`*_nusd`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from ..normalise.record import Record, usd
from ..price import Pricer
from ..store import Store, UsageRow
from ..store.rollup import FLOAT_SUMS, INT_SUMS, TOKENS
from ..store.select import Cursor
from .params import BUCKET_WIDTH, FILTERS, Filters, TimeRange, buckets, group_column, iso, sort_order
from .periods import PERIODS, label, periods
from .savings import savings

_ZERO: UsageRow = {**dict.fromkeys((*INT_SUMS, "ttft_count"), 0), **dict.fromkeys(FLOAT_SUMS, 0.0)}
_PUBLIC = {column: name for name, column in FILTERS.items()}


def _rate(part: float, whole: float) -> float:
    return round(part / whole, 6) if whole else 0.0


def figures(row: Mapping[str, Any]) -> dict[str, Any]:
    """The public figures of a rollup sum row."""
    requests = int(row["requests"])
    ttft_count = int(row["ttft_count"])
    return {
        "requests": requests,
        "errors": int(row["errors"]),
        "error_rate": _rate(int(row["errors"]), requests),
        **{t: int(row[t]) for t in TOKENS},
        "provider_cost_usd": usd(int(row["provider_cost_nusd"])),
        "customer_cost_usd": usd(int(row["customer_cost_nusd"])),
        "provider_cost_nusd": int(row["provider_cost_nusd"]),
        "customer_cost_nusd": int(row["customer_cost_nusd"]),
        "unpriced_requests": int(row["unpriced_requests"]),
        "avg_latency_ms": round(float(row["duration_s_sum"]) * 1000 / requests, 3) if requests else None,
        "avg_ttft_ms": round(float(row["ttft_s_sum"]) * 1000 / ttft_count, 3) if ttft_count else None,
        **averages(int(row["customer_cost_nusd"]), requests, int(row["total_tokens"])),
    }


def averages(cost_nusd: int, requests: int, tokens: int) -> dict[str, float | None]:
    """Customer cost per request and per 1,000 tokens, in USD (None without requests or tokens)."""
    return {
        "avg_cost_per_request_usd": round(cost_nusd / requests / 1e9, 9) if requests else None,
        "cost_per_1k_tokens_usd": round(cost_nusd * 1000 / tokens / 1e9, 9) if tokens else None,
    }


def _sum_rows(rows: Sequence[UsageRow]) -> UsageRow:
    total = dict(_ZERO)
    for row in rows:
        for key in total:
            total[key] += row[key]  # type: ignore[operator]
    return total


def _fill(rows: list[UsageRow], names: Sequence[str], time_name: str | None, slots: Sequence[Any]) -> list[UsageRow]:
    """Rows for the time buckets (`slots`) with no requests (zeros), for every combination of the other groups
    seen."""
    if time_name is None:
        return rows
    others = [n for n in names if n != time_name]
    seen = {tuple(row[n] for n in names) for row in rows}
    combos = {tuple(row[n] for n in others) for row in rows} or ({()} if not others else set())
    filled = list(rows)
    for combo in combos:
        values = dict(zip(others, combo, strict=True))
        for bucket in slots:
            key = {**values, time_name: bucket}
            if tuple(key[n] for n in names) not in seen:
                filled.append({**key, **_ZERO, "active_members": 0})
    filled.sort(key=lambda row: tuple(row[n] for n in names))
    return filled


def _group_value(name: str, value: Any) -> Any:
    return iso(int(value)) if name in BUCKET_WIDTH else value


def _with_members(
    store: Store, filters: Filters, columns: Sequence[str], start_ns: int, end_ns: int
) -> tuple[list[UsageRow], set[str]]:
    """The usage rows of [start_ns, end_ns) with their active members (distinct users with a request), and every
    member seen: one usage query more, grouped by user as well."""
    rows = filters.usage(store, columns, start_ns, end_ns)
    by_user = rows if "user_id" in columns else filters.usage(store, [*columns, "user_id"], start_ns, end_ns)
    members: dict[tuple[Any, ...], set[str]] = {}
    for row in by_user:
        if row["user_id"] and int(row["requests"]):
            members.setdefault(tuple(row[c] for c in columns), set()).add(str(row["user_id"]))
    for row in rows:
        row["active_members"] = len(members.get(tuple(row[c] for c in columns), ()))
    return rows, set().union(*members.values())


def usage(
    store: Store, span: TimeRange, filters: Filters, groups: Sequence[str], zone: ZoneInfo | None = None
) -> dict[str, Any]:
    """Sums per group (public names; hour/day as RFC 3339 UTC bucket starts, week/month as the local start in
    `zone` with its offset) over the range, with empty time buckets filled, plus the totals; each with the active
    members (distinct users). A week or month is one exact usage query per bucket."""
    columns = [group_column(g) for g in groups]
    period = next((c for c in columns if c in PERIODS), None)
    time_name = next((c for c in columns if c in BUCKET_WIDTH), period)
    members: set[str] = set()
    if period is None:
        rows, members = _with_members(store, filters, columns, span.start_ns, span.end_ns)
        slots: list[Any] = buckets(span, BUCKET_WIDTH[time_name]) if time_name else []
    else:
        rest = [c for c in columns if c != period]
        rows, slots = [], []
        for start, end, local in periods(span.start_ns, span.end_ns, period, zone or ZoneInfo("UTC")):
            part, seen = _with_members(store, filters, rest, start, end)
            rows += [{**row, period: label(local)} for row in part]
            slots.append(label(local))
            members |= seen
    rows = _fill(rows, columns, time_name, slots)
    return {
        "range": span.as_json(),
        "group_by": list(groups),
        "filters": filters.as_json(),
        "timezone": str(zone or "UTC") if period else "UTC",
        "rows": [
            {
                **{g: _group_value(g, row[c]) for g, c in zip(groups, columns, strict=True)},
                **figures(row),
                "active_members": row["active_members"],
            }
            for row in rows
        ],
        "totals": {**figures(_sum_rows(rows)), "active_members": len(members)},
    }


def request_summary(r: Record) -> dict[str, Any]:
    """One line of the request log."""
    return {
        "id": r.record_id,
        "timestamp": iso(r.start_time_ns),
        "provider": r.provider,
        "operation": r.operation,
        "model": r.request_model,
        "response_model": r.response_model,
        "status": r.status,
        "http_status": r.http_status,
        "error_type": r.error_type,
        "user": r.user_id,
        "api_key": r.api_key,
        "feature": r.feature,
        "department": r.department,
        "environment": r.environment,
        "service_tier": r.service_tier,
        "stream": r.stream,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cached_tokens": r.cached_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "total_tokens": r.total_tokens,
        "provider_cost_usd": None if r.provider_cost_nusd is None else usd(r.provider_cost_nusd),
        "customer_cost_usd": None if r.customer_cost_nusd is None else usd(r.customer_cost_nusd),
        "priced": r.priced,
        "latency_ms": round(r.duration_s * 1000, 3),
        "ttft_ms": None if r.ttft_s is None else round(r.ttft_s * 1000, 3),
    }


def request_detail(r: Record) -> dict[str, Any]:
    """Everything stored about one request: the log line plus ids, price source, events, rate limits, payloads."""
    return {
        **request_summary(r),
        "end_timestamp": iso(r.end_time_ns),
        "trace_id": r.trace_id,
        "span_id": r.span_id,
        "error_message": r.error_message,
        "stream_outcome": r.stream_outcome,
        "cache_write_tokens": r.cache_write_tokens,
        "cache_write_1h_tokens": r.cache_write_1h_tokens,
        "speed": r.speed,
        "input_audio_tokens": r.input_audio_tokens,
        "output_audio_tokens": r.output_audio_tokens,
        "web_searches": r.web_searches,
        "units": r.units,
        "usage_source": r.usage_source,
        "provider_cost_nusd": r.provider_cost_nusd,
        "customer_cost_nusd": r.customer_cost_nusd,
        "price_source": r.price_source,
        "service": r.service,
        "source_ip": r.source_ip,
        "response_id": r.response_id,
        "request_id": r.request_id,
        "finish_reasons": r.finish_reasons,
        "events": r.events,
        "ratelimits": r.ratelimits,
        "input_messages": r.input_messages,
        "output_messages": r.output_messages,
        "source": r.source,
        "params": r.params,
        "dimensions": r.dimensions,
    }


def request_log(
    store: Store, span: TimeRange, filters: Filters, limit: int, cursor: str | None = None, sort: str | None = None
) -> dict[str, Any]:
    """One page of the request log in `sort` order (see `sort_order`; default newest first) and the cursor of the
    next page (None after the last)."""
    key, descending = sort_order(sort)
    at = Cursor.decode(cursor) if cursor else None
    records, following = filters.page(store, span, limit, at, newest_first=descending, sort=key)
    return {
        "range": span.as_json(),
        "filters": filters.as_json(),
        "sort": f"{'-' if descending else ''}{key}",
        "requests": [request_summary(r) for r in records],
        "next_cursor": following.encode() if following else None,
    }


def _ranked(rows: Sequence[UsageRow], column: str, figure: str = "customer_cost_nusd") -> list[UsageRow]:
    return sorted(rows, key=lambda row: (-int(row[figure]), str(row[column])))


def fold(rows: Sequence[UsageRow], columns: Sequence[str], keep: Mapping[str, str] | None = None) -> list[UsageRow]:
    """`rows` summed by `columns` (a coarser grouping of the same query), of the rows whose values match `keep`."""
    acc: dict[tuple[Any, ...], UsageRow] = {}
    for row in rows:
        if keep and any(row[k] != v for k, v in keep.items()):
            continue
        key = tuple(row[c] for c in columns)
        total = acc.get(key)
        if total is None:
            total = acc[key] = {**dict(zip(columns, key, strict=True)), **_ZERO}
        for name in _ZERO:
            total[name] += row[name]  # type: ignore[operator]
    return list(acc.values())


_ERROR_GROUPS = ["provider", "request_model", "status", "error_type"]


def errors(store: Store, span: TimeRange, filters: Filters) -> dict[str, Any]:
    """Total errors and error rate, and errors by type, by model and by provider: one usage query (by provider,
    model, status and type), folded here."""
    rows = filters.usage(store, _ERROR_GROUPS, span.start_ns, span.end_ns)
    total = _sum_rows(rows)
    failed = {"status": "error"}
    if filters.single().get("status", "error") == "error":
        by_type = fold(rows, ["error_type"], failed)
    else:  # only successes asked for: the types come from the errors all the same
        by_type = filters.usage(store, ["error_type"], span.start_ns, span.end_ns, failed)

    def breakdown(column: str) -> list[dict[str, Any]]:
        shown = [row for row in fold(rows, [column]) if int(row["errors"])]
        return [
            {
                _PUBLIC[column]: row[column],
                "errors": int(row["errors"]),
                "requests": int(row["requests"]),
                "error_rate": _rate(int(row["errors"]), int(row["requests"])),
            }
            for row in _ranked(shown, column, "errors")
        ]

    return {
        "range": span.as_json(),
        "filters": filters.as_json(),
        "total_requests": int(total["requests"]),
        "total_errors": int(total["errors"]),
        "error_rate": _rate(int(total["errors"]), int(total["requests"])),
        "by_type": [
            {"type": row["error_type"] or "unknown", "count": int(row["requests"])}
            for row in _ranked(by_type, "error_type", "requests")
        ],
        "by_model": breakdown("request_model"),
        "by_provider": breakdown("provider"),
    }


def _drivers(rows: Sequence[UsageRow], column: str, top: int) -> list[dict[str, Any]]:
    return [
        {
            _PUBLIC[column]: row[column],
            "cost_usd": usd(int(row["customer_cost_nusd"])),
            "requests": int(row["requests"]),
        }
        for row in _ranked(fold(rows, [column]), column)[:top]
        if int(row["requests"])
    ]


# The cost drivers, each read with the others of its rollup family in one query.
_DRIVER_GROUPS = (["request_model"], ["user_id", "feature", "api_key"])


def insights(
    store: Store, span: TimeRange, filters: Filters, top: int = 5, pricer: Pricer | None = None
) -> dict[str, Any]:
    """Cost by operation, the trend against the previous period of the same length, the top cost drivers (models,
    users, features, API keys), the spend projected over 30 days at the period's daily rate, and savings advice
    priced with the catalog (see savings.py). Three usage queries: by operation, provider and model, by user, feature
    and API key, and the previous period's total; the advice reads how the top models' requests were sent from the
    records."""
    by_model = filters.usage(store, ["operation", "provider", *_DRIVER_GROUPS[0]], span.start_ns, span.end_ns)
    by_user = filters.usage(store, _DRIVER_GROUPS[1], span.start_ns, span.end_ns)
    by_operation = fold(by_model, ["operation"])
    current = _sum_rows(by_operation)
    before = span.previous()
    previous = _sum_rows(filters.usage(store, [], before.start_ns, before.end_ns))
    cost, previous_cost = int(current["customer_cost_nusd"]), int(previous["customer_cost_nusd"])
    direction = "up" if cost > previous_cost else "down" if cost < previous_cost else "flat"
    days = span.span_ns / 86_400e9
    advice = savings(store, span, filters, pricer or Pricer(), by_model)
    sources = {"request_model": by_model, "user_id": by_user, "feature": by_user, "api_key": by_user}
    return {
        "range": span.as_json(),
        "filters": filters.as_json(),
        "requests": int(current["requests"]),
        "total_cost_usd": usd(cost),
        "total_provider_cost_usd": usd(int(current["provider_cost_nusd"])),
        "unpriced_requests": int(current["unpriced_requests"]),
        "cost_by_operation": {
            str(row["operation"]): usd(int(row["customer_cost_nusd"])) for row in _ranked(by_operation, "operation")
        },
        "trend": {
            "direction": direction,
            "percentage": round((cost - previous_cost) * 100 / previous_cost, 2) if previous_cost else None,
            "previous_period": before.as_json(),
            "previous_cost_usd": usd(previous_cost),
        },
        "top_cost_drivers": {
            name: _drivers(sources[FILTERS[name]], FILTERS[name], top)
            for name in ("model", "user", "feature", "api_key")
        },
        "projected_30d_cost_usd": round(cost / 1e9 / days * 30, 9) if days else 0.0,
        "savings": advice,
        "recommendations": [item["advice"] for item in advice],
    }
