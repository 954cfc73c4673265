"""The queries of the Grafana dashboards, run the way Grafana would run them.

Variables are substituted as Grafana (11.6, scenes) does: `$var` / `${var}` / `${var:format}`; a multi-value
selection in the Prometheus datasource's default format as a regex alternation `(a|b)` of regex-escaped values, with
`:doublequote` as `"a","b"` (a quote inside escaped `\"`), with `:percentencode` as encodeURIComponent; All as the
variable's custom all value, unformatted (scenes' CustomAllValue: every format but text, percentencode and
queryparam); the built-ins `$__range`, `$__interval` and `$__rate_interval` (max($__interval + scrape interval,
4 x scrape interval)), and `${__from:date:iso}` / `${__to:date:iso}` (ISO 8601, milliseconds, UTC). The Infinity
datasource (infinity.py) sends what this produces.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

ALL = "$__all"
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::([\w:]+))?\}|(\w+))")
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]/])")


@dataclass
class TimeRange:
    start: float
    end: float
    scrape_interval: float = 1.0
    max_data_points: int = 1000

    @property
    def seconds(self) -> int:
        return round(self.end - self.start)

    @property
    def interval(self) -> float:
        """Grafana's $__interval: range / max data points, never below the scrape interval."""
        return max(math.ceil((self.end - self.start) / self.max_data_points), self.scrape_interval)

    @property
    def rate_interval(self) -> float:
        return max(self.interval + self.scrape_interval, 4 * self.scrape_interval)


@dataclass
class Selection:
    """Selected values per variable: [ALL] (the default), or a list of values."""

    values: dict[str, list[str]] = field(default_factory=dict)

    def of(self, name: str) -> list[str]:
        return self.values.get(name, [ALL])


def regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(r"\\\1", value)


def format_value(variable: dict[str, Any], chosen: list[str], fmt: str | None) -> str:
    """One variable's text in a query: Grafana's formatting for regex matchers (Prometheus' default, `:regex`),
    `:doublequote` and `:percentencode`."""
    if chosen == [ALL]:
        if variable.get("allValue"):
            if fmt in ("text", "percentencode", "queryparam"):
                raise AssertionError(f"format {fmt!r} of All is not handled here")
            return str(variable["allValue"])
        raise AssertionError(f"variable {variable['name']} has All without an allValue")
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in chosen)
    if fmt == "percentencode":
        assert len(chosen) == 1, chosen
        return quote(chosen[0], safe="-_.~")  # encodeURIComponentStrict
    if fmt not in (None, "regex"):
        raise AssertionError(f"format {fmt!r} of ${variable['name']} is not handled here")
    escaped = [regex_escape(v) for v in chosen]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def iso_ms(seconds: float) -> str:
    """Grafana's `date:iso`: toISOString(), milliseconds, UTC."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def interpolate(text: str, variables: list[dict[str, Any]], selection: Selection, span: TimeRange) -> str:
    by_name = {v["name"]: v for v in variables}
    builtins = {
        "__range": f"{span.seconds}s",
        "__range_s": str(span.seconds),
        "__interval": f"{span.interval:g}s",
        "__rate_interval": f"{span.rate_interval:g}s",
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name in builtins:
            return builtins[name]
        if name in ("__from", "__to"):
            assert match.group(2) == "date:iso", match.group(0)
            return iso_ms(span.start if name == "__from" else span.end)
        if name.startswith("__"):
            return match.group(0)  # other built-ins ($__timeFilter, $__value...) are the datasource's
        variable = by_name.get(name)
        if variable is None:
            raise AssertionError(f"${name} is not a variable of the dashboard: {text}")
        if variable["type"] == "datasource":
            return match.group(0)  # the query's datasource reference: Grafana resolves it, not the query text
        if variable["type"] == "textbox":
            value = selection.of(name)
            typed = str(variable.get("query", "")) if value == [ALL] else value[0]
            return format_value(variable, [typed], match.group(2)) if match.group(2) else typed
        return format_value(variable, selection.of(name), match.group(2))

    return _VARIABLE.sub(replace, text)


@dataclass
class Target:
    dashboard: str
    panel: str
    kind: str  # "prometheus" | "api"
    query: dict[str, Any]
    variables: list[dict[str, Any]]

    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.query.get('refId')}"


def targets(name: str, document: dict[str, Any]) -> Iterator[Target]:
    """Every panel query of a dashboard (rows included)."""
    variables = document.get("templating", {}).get("list", [])
    for panel in document.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for query in inner.get("targets", []):
                kind = "api" if "url_options" in query else "prometheus"
                yield Target(name, inner.get("title", ""), kind, query, variables)


def panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in document.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def datasource_type(variables: list[dict[str, Any]], ref: dict[str, Any]) -> str:
    """The plugin a query runs on: its datasource ref's type, or the datasource variable's."""
    uid = str(ref.get("uid", ""))
    match = _VARIABLE.fullmatch(uid)
    if match:
        name = match.group(1) or match.group(3)
        (variable,) = [v for v in variables if v["name"] == name and v["type"] == "datasource"]
        return str(variable["query"])
    return str(ref["type"])


def label_values_query(query: str) -> tuple[str, str | None]:
    """`label_values(selector, label)` -> (label, selector); `label_values(label)` -> (label, None)."""
    match = re.fullmatch(r"\s*label_values\((?:(.*),\s*)?(\w+)\)\s*", query, re.S)
    assert match, f"not a label_values() query: {query}"
    return match.group(2), match.group(1)
