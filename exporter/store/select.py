"""Which records a request-log page, an export or a maintenance job reads: filters, time range, keyset order."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..normalise.record import STATUS_ERROR, STATUS_SUCCESS, Record
from . import json_sql
from .json_sql import JsonFilters

# Equality filters on the records: name -> column.
FILTER_COLUMNS = {
    "user_id": "user_id",
    "api_key": "api_key",
    "provider": "provider",
    "request_model": "request_model",
    "response_model": "response_model",
    "operation": "operation",
    "feature": "feature",
    "department": "department",
    "environment": "environment",
    "error_type": "error_type",
    "service": "service",
    "service_tier": "service_tier",
}
STATUSES = (STATUS_SUCCESS, STATUS_ERROR, "4xx", "5xx")
_STATUS_SQL = {
    STATUS_SUCCESS: f"status = '{STATUS_SUCCESS}'",
    STATUS_ERROR: f"status = '{STATUS_ERROR}'",
    "4xx": "http_status >= 400 AND http_status < 500",
    "5xx": "http_status >= 500 AND http_status < 600",
}


# Request-log orders: name -> the SQL value pages are ordered by (then record_id); "time" is the default.
SORT_KEYS = {
    "time": "start_time_ns",
    "cost": "COALESCE(customer_cost_nusd, -1)",  # unpriced requests sort below every priced one
    "latency": "duration_s",
    "tokens": "total_tokens",
}


def sort_value(record: Record, sort: str) -> int | float:
    """A record's value of a SORT_KEYS order, as the SQL computes it."""
    if sort == "cost":
        return -1 if record.customer_cost_nusd is None else record.customer_cost_nusd
    if sort == "latency":
        return record.duration_s
    if sort == "tokens":
        return record.total_tokens
    return record.start_time_ns


class BadCursor(ValueError):
    """A page cursor this store did not hand out."""


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after (start_time_ns, record_id) in the page order, among the records stored up to
    `snapshot` (so records written meanwhile neither shift nor repeat the pages). Ordered by another `sort` key
    (see SORT_KEYS), the page starts after (value, record_id)."""

    snapshot: int
    start_time_ns: int
    record_id: str
    sort: str = "time"
    value: int | float = 0  # the sort key's value of the last record (for sorts other than time)

    @property
    def position(self) -> int | float:
        """The sort key's value the next page starts after."""
        return self.start_time_ns if self.sort == "time" else self.value

    def encode(self) -> str:
        fields: list[Any] = [self.snapshot, self.start_time_ns, self.record_id]
        if self.sort != "time":
            fields += [self.sort, self.value]
        raw = json.dumps(fields, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            fields = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            snapshot, start, record_id = fields[:3]
            sort, value = fields[3:] if len(fields) == 5 else ("time", 0)
        except (binascii.Error, ValueError, TypeError, KeyError) as e:
            raise BadCursor(f"cursor {text!r} is not one this API returned") from e
        valid = isinstance(snapshot, int) and isinstance(start, int) and isinstance(record_id, str)
        valid = valid and len(fields) in (3, 5) and sort in SORT_KEYS
        valid = valid and isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 2**63
        if not valid or "\x00" in record_id or not (0 <= snapshot < 2**63 and -(2**63) <= start < 2**63):
            raise BadCursor(f"cursor {text!r} is not one this API returned")
        return cls(snapshot, start, record_id, sort, value)


@dataclass(frozen=True)
class Selection:
    """Records starting in [start_ns, end_ns) that match every given filter (None: any)."""

    start_ns: int
    end_ns: int
    equal: Mapping[str, str] = field(default_factory=dict)  # FILTER_COLUMNS name -> value ('' matches none)
    status: str | None = None  # one of STATUSES
    json: JsonFilters = field(default_factory=dict)  # request parameters and dimensions (`json_sql`)
    http_status: int | None = None  # an exact HTTP status code

    def __post_init__(self) -> None:
        unknown = [name for name in self.equal if name not in FILTER_COLUMNS]
        if unknown:
            raise ValueError(f"unknown record filter(s) {unknown}; known: {', '.join(FILTER_COLUMNS)}")
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")

    def where(self, placeholder: str) -> tuple[str, list[Any]]:
        """The WHERE condition (without the keyword) and its parameters."""
        p = placeholder
        clauses = [f"start_time_ns >= {p}", f"start_time_ns < {p}"]
        params: list[Any] = [self.start_ns, self.end_ns]
        for name, value in self.equal.items():
            column = FILTER_COLUMNS[name]
            if value == "":  # '' means "none", as in the rollups
                clauses.append(f"({column} IS NULL OR {column} = '')")
            else:
                clauses.append(f"{column} = {p}")
                params.append(value)
        if self.status is not None:
            clauses.append(_STATUS_SQL[self.status])
        if self.json:
            more, values = json_sql.where(self.json, p)
            clauses += more
            params += values
        if self.http_status is not None:
            clauses.append(f"http_status = {p}")
            params.append(self.http_status)
        return " AND ".join(clauses), params
