"""Provider and model health as the connection add-on defines it: success rate, error counts, last used, last error,
and a status from error-count and success-rate bounds (`health:` in llmtally.yaml)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..normalise.record import Record
from ..store import Store, UsageRow
from .params import Filters, TimeRange, iso
from .reports import figures, fold
from .settings import HealthBounds

# One usage query by these (the narrow model rollups), folded per provider and per provider/model.
_GROUPS = ["provider", "request_model", "error_type"]
_NAMES = {"provider": "provider", "request_model": "model"}


def health(store: Store, span: TimeRange, filters: Filters, bounds: HealthBounds | None = None) -> dict[str, Any]:
    """Per provider and per provider/model over the range: requests, errors, errors by type, success rate, mean
    latency and TTFT, when last used (the newest successful request, as the add-on's health check reads it) and how
    long ago, the newest request of any outcome, the last error (time, type, HTTP status, message) and the health
    status."""
    bounds = bounds or HealthBounds()
    now = time.time_ns()
    rows = filters.usage(store, _GROUPS, span.start_ns, span.end_ns)

    def entries(columns: list[str]) -> list[dict[str, Any]]:
        out = []
        for row in sorted(fold(rows, columns), key=lambda r: tuple(str(r[c]) for c in columns)):
            if not int(row["requests"]):
                continue
            shown = figures(row)
            success = round(1.0 - shown["error_rate"], 6)
            scope = {_NAMES[c]: str(row[c]) for c in columns}
            narrowed = replace(filters, equal={**filters.equal, **{k: (v,) for k, v in scope.items()}})
            used = (
                _newest(store, span, _with_status(narrowed, "success")) if shown["errors"] < shown["requests"] else None
            )
            failed = _newest(store, span, _with_status(narrowed, "error")) if shown["errors"] else None
            newest = max((r for r in (used, failed) if r), key=lambda r: (r.start_time_ns, r.record_id), default=None)
            out.append(
                {
                    **scope,
                    "requests": shown["requests"],
                    "errors": shown["errors"],
                    "errors_by_type": _by_type(rows, {c: row[c] for c in columns}),
                    "success_rate": success,
                    "avg_latency_ms": shown["avg_latency_ms"],
                    "avg_ttft_ms": shown["avg_ttft_ms"],
                    "last_used": iso(used.start_time_ns) if used else None,
                    "last_used_seconds_ago": round((now - used.start_time_ns) / 1e9, 3) if used else None,
                    "last_request": iso(newest.start_time_ns) if newest else None,
                    "last_error": _error_of(failed),
                    "health": bounds.status(shown["errors"], success),
                }
            )
        return out

    return {
        "range": span.as_json(),
        "filters": filters.as_json(),
        "thresholds": bounds.as_json(),
        "providers": entries(["provider"]),
        "models": entries(["provider", "request_model"]),
    }


def _by_type(rows: Sequence[UsageRow], scope: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        if int(row["errors"]) and all(row[k] == v for k, v in scope.items()):
            name = str(row["error_type"]) or "unknown"
            counts[name] = counts.get(name, 0) + int(row["errors"])
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _with_status(filters: Filters, status: str) -> Filters:
    return replace(filters, status=(status,))


def _newest(store: Store, span: TimeRange, filters: Filters) -> Record | None:
    records, _ = filters.page(store, span, 1)
    return records[0] if records else None


def _error_of(record: Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "time": iso(record.start_time_ns),
        "id": record.record_id,
        "type": record.error_type,
        "http_status": record.http_status,
        "message": record.error_message,
    }
