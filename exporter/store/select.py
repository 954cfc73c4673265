"""Which records a request-log page, an export or a maintenance job reads: filters, time range, keyset order."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..normalise.record import STATUS_ERROR, STATUS_SUCCESS
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


class BadCursor(ValueError):
    """A page cursor this store did not hand out."""


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after (start_time_ns, record_id) in the page order, among the records stored up to
    `snapshot` (so records written meanwhile neither shift nor repeat the pages)."""

    snapshot: int
    start_time_ns: int
    record_id: str

    def encode(self) -> str:
        raw = json.dumps([self.snapshot, self.start_time_ns, self.record_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            snapshot, start, record_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, ValueError, TypeError) as e:
            raise BadCursor(f"cursor {text!r} is not one this API returned") from e
        valid = isinstance(snapshot, int) and isinstance(start, int) and isinstance(record_id, str)
        if not valid or "\x00" in record_id or not (0 <= snapshot < 2**63 and -(2**63) <= start < 2**63):
            raise BadCursor(f"cursor {text!r} is not one this API returned")
        return cls(snapshot, start, record_id)


@dataclass(frozen=True)
class Selection:
    """Records starting in [start_ns, end_ns) that match every given filter (None: any)."""

    start_ns: int
    end_ns: int
    equal: Mapping[str, str] = field(default_factory=dict)  # FILTER_COLUMNS name -> value ('' matches none)
    status: str | None = None  # one of STATUSES
    json: JsonFilters = field(default_factory=dict)  # request parameters and dimensions (`json_sql`)

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
        return " AND ".join(clauses), params
