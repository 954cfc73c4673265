"""The queries of the Grafana dashboards, run the way Grafana would run them.

Variables are substituted as Grafana's Prometheus and PostgreSQL datasources do: `$var` / `${var}` / `${var:regex}`,
a multi-value selection as a regex alternation `(a|b)` of regex-escaped values, All as the variable's allValue
(unescaped), and the built-ins `$__range`, `$__interval` and `$__rate_interval` (max($__interval + scrape interval,
4 x scrape interval)); the SQL macros `$__timeFilter(column)` and `$__timeGroupAlias(column, interval)` as Grafana's
PostgreSQL datasource expands them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ALL = "$__all"
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::(\w+))?\}|(\w+))")
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
    """One variable's text in a query: Grafana's formatting for regex matchers (Prometheus' default, `:regex`)."""
    if chosen == [ALL]:
        if variable.get("allValue"):
            return str(variable["allValue"])
        raise AssertionError(f"variable {variable['name']} has All without an allValue")
    if fmt not in (None, "regex"):
        raise AssertionError(f"format {fmt!r} of ${variable['name']} is not handled here")
    escaped = [regex_escape(v) for v in chosen]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


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
        if name.startswith("__"):
            return match.group(0)  # other built-ins ($__timeFilter, $__value...) are the datasource's
        variable = by_name.get(name)
        if variable is None:
            raise AssertionError(f"${name} is not a variable of the dashboard: {text}")
        if variable["type"] == "textbox":
            return str(variable.get("query", ""))
        return format_value(variable, selection.of(name), match.group(2))

    return _VARIABLE.sub(replace, text)


def expand_sql_macros(sql: str, span: TimeRange) -> str:
    start = datetime.fromtimestamp(span.start, UTC).isoformat().replace("+00:00", "Z")
    end = datetime.fromtimestamp(span.end, UTC).isoformat().replace("+00:00", "Z")
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", sql)

    def group(match: re.Match[str]) -> str:
        column, interval = match.group(1), match.group(2).strip()
        seconds = span.interval if interval == "$__interval" else float(interval.rstrip("s"))
        return f'floor(extract(epoch from {column})/{seconds:g})*{seconds:g} AS "time"'

    sql = re.sub(r"\$__timeGroupAlias\((\w+),\s*([^)]+)\)", group, sql)
    assert "$__" not in sql, f"a macro left unexpanded: {sql}"
    return sql


@dataclass
class Target:
    dashboard: str
    panel: str
    kind: str  # "prometheus" | "sql"
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
                kind = "sql" if "rawSql" in query else "prometheus"
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
