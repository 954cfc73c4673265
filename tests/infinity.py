"""What the Infinity datasource plugin (yesoreyeram-infinity-datasource 3.11.1) does with the dashboards' API queries,
small and only for the features they use: a GET of the datasource's URL + the query's `url` with `url_options.params`
added in order (pkg/infinity/request.go: GetQueryURL), the datasource's bearer token as `Authorization: Bearer ...`
(headers.go: ApplyBearerToken), any non-2xx answer an error (client.go), then the backend parser (jsonBackend.go with
infinity-libs' jsonframer, the GJSON framer): `root_selector` picks the rows (a GJSON path; the dashboards use plain
dotted keys; a missing one is an error), each `columns` entry takes `selector` from every row (an object is one row)
under the name `text`, typed number / string / timestamp (RFC 3339); no columns: every field of every row.

A frame here is a dict: field name -> list of values (one per row).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

Frame = dict[str, list[Any]]


class InfinityError(AssertionError):
    """What the panel would show as its error."""


def _select(document: Any, path: str) -> Any:
    """A GJSON path of plain dotted keys (what the dashboards' root selectors are)."""
    value = document
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise InfinityError(f"root selector {path!r} not found")  # jsonframer.ErrInvalidRootSelector
        value = value[key]
    return value


def _typed(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "number":  # gframer anyToNullableNumber: numbers, numeric strings; anything else null
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if kind == "timestamp":
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return value if isinstance(value, str) else str(value)


def parse(document: Any, root: str, columns: list[dict[str, str]]) -> Frame:
    """The backend parser's frame of `document`."""
    rows = _select(document, root) if root else document
    items = rows if isinstance(rows, list) else [rows]
    if columns:
        names = [c["text"] or c["selector"] for c in columns]
        return {
            name: [_typed(_select_or_none(item, c["selector"]), c["type"]) for item in items]
            for name, c in zip(names, columns, strict=True)
        }
    keys = sorted({k for item in items if isinstance(item, dict) for k in item})
    return {k: [item.get(k) if isinstance(item, dict) else None for item in items] for k in keys}


def _select_or_none(item: Any, path: str) -> Any:
    try:
        return _select(item, path)
    except InfinityError:
        return None  # a column whose selector a row lacks is null there


def request(base_url: str, token: str | None, query: dict[str, Any]) -> httpx.Response:
    """The HTTP request the plugin's backend sends for an (interpolated) query."""
    url = query["url"] if query["url"].startswith(base_url) else base_url + query["url"]
    params = [(p["key"], p["value"]) for p in query["url_options"]["params"]]
    headers = {"Accept": "application/json;q=0.9,text/plain"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    assert query["url_options"]["method"] == "GET"
    return httpx.get(url, params=params, headers=headers, timeout=30)


def run(base_url: str, token: str | None, query: dict[str, Any]) -> Frame:
    """The frame the panel gets; raises InfinityError where the panel would show an error."""
    assert query["type"] == "json" and query["source"] == "url" and query["parser"] == "backend", query
    answer = request(base_url, token, query)
    if not 200 <= answer.status_code < 300:
        raise InfinityError(f"{answer.status_code} from {answer.request.url}: {answer.text[:300]}")
    return parse(answer.json(), query.get("root_selector", ""), query.get("columns", []))
