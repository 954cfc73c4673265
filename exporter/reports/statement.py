"""A statement: per group and in total over a period, requests, tokens, provider cost, markup, fee, customer cost
and the price sources used. The sums are the usage report's (`api.reports.usage`, the same query as `llmtally
usage`, so totals agree to the nano-dollar); one pass over the period's records adds what rollups do not keep: the
price sources, the fixed fee of the pricing in force (markup = customer - provider - fee) and the records repriced.

A statement of a closed period is kept (`report_runs`: its fingerprint and figures) the first time it is produced;
a later one of the same period, grouping and filters is compared with it and says what changed and which records
were repriced since.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api import reports
from ..api.params import BUCKET_WIDTH, Filters, QueryError, TimeRange, group_column, iso
from ..normalise.record import Record, usd
from ..store import ReportRun, Store

FIGURES = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "provider_cost_nusd",
    "markup_nusd",
    "fee_nusd",
    "customer_cost_nusd",
    "unpriced_requests",
)
COSTS = ("provider_cost", "markup", "fee", "customer_cost")
# A period is closed (its statement kept and compared) this long after its end: records of its last minutes may
# still be on their way (batching, retries).
CLOSED_AFTER_NS = 5 * 60 * 1_000_000_000
MAX_LISTED_REPRICED = 100  # records named in a statement's `repriced` list (all are counted)

Fees = Callable[[Record], int]


def check_groups(groups: Sequence[str]) -> None:
    """A statement groups by dimensions (whatever the usage report accepts), not by time buckets."""
    timed = [g for g in groups if g in BUCKET_WIDTH or g in ("week", "month")]
    if timed:
        raise QueryError(f"a statement covers its period as a whole: group it by dimensions, not {', '.join(timed)}")


@dataclass
class _Extra:
    """What one group's records add to its usage sums."""

    fee_nusd: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    repriced: int = 0  # records


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _repricings(record: Record) -> list[dict[str, Any]]:
    return [
        {
            "id": record.record_id,
            "time": iso(int(event.get("time_unix_nano") or 0)),
            "time_unix_nano": int(event.get("time_unix_nano") or 0),
            "previous_customer_cost_nusd": event.get("previous_customer_cost_nusd"),
            "previous_price_source": event.get("previous_price_source"),
            "price_source": event.get("price_source"),
        }
        for event in record.events
        if isinstance(event, dict) and event.get("type") == "repriced"
    ]


def _extras(
    store: Store, span: TimeRange, filters: Filters, groups: Sequence[str], fees: Fees
) -> dict[tuple[str, ...], _Extra]:
    """Per group: the fee of its charged requests, its price sources, how many of its records were repriced (one
    aggregate query; the fee asked of `fees` once per priced model)."""
    found: dict[tuple[str, ...], _Extra] = {}
    columns = [group_column(g) for g in groups]
    for row in store.statement_facts(filters.selections(span), columns):
        extra = found.setdefault(tuple(_text(row[c]) for c in columns), _Extra())
        if row["charged"]:
            model = Record("", 0, 0, provider=row["provider"], request_model=row["request_model"], priced=True)
            model.response_model, model.customer_cost_nusd = row["response_model"], 1
            extra.fee_nusd += int(row["charged"]) * fees(model)
        extra.sources[row["price_source"] or "unpriced"] += int(row["requests"])
        extra.repriced += int(row["repriced"])
    return found


def _repriced_records(store: Store, span: TimeRange, filters: Filters) -> list[dict[str, Any]]:
    """Every repricing of the records of the statement (read only when a comparison needs them)."""
    return [item for record in filters.records(store, span) for item in _repricings(record)]


def _figures(row: dict[str, Any], extra: _Extra) -> dict[str, Any]:
    provider, customer = int(row["provider_cost_nusd"]), int(row["customer_cost_nusd"])
    nusd = {
        "provider_cost_nusd": provider,
        "markup_nusd": customer - provider - extra.fee_nusd,
        "fee_nusd": extra.fee_nusd,
        "customer_cost_nusd": customer,
    }
    return {
        "requests": int(row["requests"]),
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": int(row["output_tokens"]),
        "cached_tokens": int(row["cached_tokens"]),
        **nusd,
        **{f"{name}_usd": usd(nusd[f"{name}_nusd"]) for name in COSTS},
        "unpriced_requests": int(row["unpriced_requests"]),
        "price_sources": dict(sorted(extra.sources.items())),
    }


def _sum(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    total = {name: sum(int(row[name]) for row in rows) for name in FIGURES}
    sources: Counter[str] = Counter()
    for row in rows:
        sources.update(row["price_sources"])
    return {
        **{name: total[name] for name in FIGURES if not name.endswith("_nusd")},
        **{name: total[name] for name in FIGURES if name.endswith("_nusd")},
        **{f"{name}_usd": usd(total[f"{name}_nusd"]) for name in COSTS},
        "price_sources": dict(sorted(sources.items())),
    }


def fingerprint(body: dict[str, Any]) -> str:
    """sha256 of a statement's period, grouping, filters and figures (not of when it was produced)."""
    kept = {k: body[k] for k in ("period", "group_by", "filters", "rows", "totals")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def identity(span: TimeRange, groups: Sequence[str], filters: Filters) -> str:
    """The key a statement's first production is kept under: its period, grouping and filters."""
    text = json.dumps([span.start_ns, span.end_ns, list(groups), filters.as_json()], sort_keys=True)
    return "statement:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def build(
    store: Store,
    span: TimeRange,
    filters: Filters,
    groups: Sequence[str],
    fees: Fees,
    *,
    title: str = "Statement",
    now_ns: int | None = None,
    keep: bool = True,
) -> dict[str, Any]:
    """The statement of `span` grouped by `groups` (public group_by names). `fees(record)` is the fixed fee of a
    record (`Pricer.fee_nusd`). With `keep`, a closed period's statement is kept the first time and compared with
    that one after (`comparison`)."""
    check_groups(groups)
    now = time.time_ns() if now_ns is None else now_ns
    usage = reports.usage(store, span, filters, groups)
    extras = _extras(store, span, filters, groups, fees)
    rows = []
    for row in usage["rows"]:
        key = tuple(_text(row[g]) for g in groups)
        extra = extras.get(key, _Extra())
        rows.append({**{g: row[g] for g in groups}, **_figures(row, extra)})
    rows.sort(key=lambda r: (-r["customer_cost_nusd"], tuple(str(r[g]) for g in groups)))
    body: dict[str, Any] = {
        "title": title,
        "period": span.as_json(),
        "group_by": list(groups),
        "filters": filters.as_json(),
        "rows": rows,
        "totals": _sum(rows),
    }
    body["fingerprint"] = fingerprint(body)
    body["generated_at"] = iso(now - now % 1000)
    repriced = any(extra.repriced for extra in extras.values())
    body["comparison"] = _compare(store, span, filters, groups, body, repriced, now) if keep else None
    return body


def _figures_of(body: dict[str, Any]) -> dict[str, Any]:
    groups = body["group_by"]
    return {
        "rows": {json.dumps([r[g] for g in groups]): {n: r[n] for n in FIGURES} for r in body["rows"]},
        "totals": {n: body["totals"][n] for n in FIGURES},
    }


def _changes(before: dict[str, Any], now: dict[str, Any], groups: Sequence[str]) -> list[dict[str, Any]]:
    changed = []
    for key in sorted(set(before["rows"]) | set(now["rows"])):
        old, new = before["rows"].get(key, {}), now["rows"].get(key, {})
        for name in FIGURES:
            if old.get(name, 0) != new.get(name, 0):
                values = dict(zip(groups, json.loads(key), strict=True))
                changed.append({**values, "figure": name, "before": old.get(name, 0), "now": new.get(name, 0)})
    return changed


def _compare(
    store: Store,
    span: TimeRange,
    filters: Filters,
    groups: Sequence[str],
    body: dict[str, Any],
    repriced: bool,
    now: int,
) -> dict[str, Any]:
    """How this statement compares with the first one kept of the same period, grouping and filters."""
    if span.end_ns + CLOSED_AFTER_NS > now:
        return {"closed": False, "message": "the period is not closed: its figures may still change"}
    key = identity(span, groups, filters)
    figures = _figures_of(body)
    mine = ReportRun(
        key,
        body["title"],
        span.start_ns,
        span.end_ns,
        ",".join(groups),
        "kept",
        now,
        now,
        body["fingerprint"],
        json.dumps(figures, sort_keys=True),
    )
    if store.claim_report_run(mine):
        return {"closed": True, "reference": body["generated_at"], "same": True, "message": "first statement kept"}
    kept = store.report_run(key)
    assert kept is not None and kept.figures is not None
    since = int(kept.generated_at_ns or kept.claimed_at_ns)
    out: dict[str, Any] = {
        "closed": True,
        "reference": iso(since - since % 1000),
        "same": kept.fingerprint == body["fingerprint"],
    }
    if out["same"]:
        out["message"] = f"same figures as the statement produced at {out['reference']}"
        return out
    out["changes"] = _changes(json.loads(kept.figures), figures, groups)
    repricings = _repriced_records(store, span, filters) if repriced else []
    later = sorted((r for r in repricings if r["time_unix_nano"] > since), key=lambda r: (r["time_unix_nano"], r["id"]))
    out["repriced_records"] = len(later)
    out["repriced"] = [{k: v for k, v in r.items() if k != "time_unix_nano"} for r in later[:MAX_LISTED_REPRICED]]
    if later:
        cause = f"{len(later)} records were repriced since"
    elif all(c["figure"] in ("fee_nusd", "markup_nusd") for c in out["changes"]):
        cause = "the fixed fee of the pricing in force changed since (the stored costs did not)"
    else:
        cause = "records were added or removed since"
    out["message"] = f"figures differ from the statement produced at {out['reference']}: {cause}"
    return out
