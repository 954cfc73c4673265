"""Building blocks for the llmtally dashboards, on grafana-foundation-sdk: datasources, variables, queries, panels.

Two datasources: Prometheus (rates, latency and TTFT histograms, capacity, alert state) and llmtally's API through
the Infinity plugin (exact totals, tables, the request log, budgets). Every Prometheus panel filters with `SELECT`
(environment, provider, model, feature); every API panel passes every filter variable (those and user, API key,
status). The store-derived gauges (budgets, credits, spend, thresholds) are the same on every replica and are
aggregated with `max`, counters and histograms with `sum`.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prom_models

PROMETHEUS = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
INFINITY_TYPE = "yesoreyeram-infinity-datasource"
INFINITY_VERSION = "3.11.1"  # the plugin version the dashboards are built and tested for (see the provisioning)
API = models.DataSourceRef(type_val=INFINITY_TYPE, uid="${api}")
MIXED = models.DataSourceRef(type_val="datasource", uid="-- Mixed --")

FILTERS = ("environment", "provider", "model", "feature")
"""The filters that are Prometheus labels (and API filters)."""
API_FILTERS = (*FILTERS, "user", "api_key", "status")
"""Every filter of the dashboards: the API takes them all; user, api key and status are not Prometheus labels."""
SELECT = ",".join(f'{name}=~"${name}"' for name in FILTERS)
"""The label matchers of the dashboard variables, for the families that carry all four labels."""
SELECT_NO_FEATURE = ",".join(f'{name}=~"${name}"' for name in FILTERS[:3])
"""For the recording rules summed by environment, provider and model only."""
SELECT_PROVIDER_MODEL = 'provider=~"$provider",model=~"$model"'
SELECT_ENVIRONMENT = 'environment=~"$environment"'
ALL = ".*"
"""Every filter variable's All value: a regex for Prometheus' matchers, and "no filter" for the API."""

# Colours and steps of the budget statuses (green < 75 %, yellow 75-90 %, red > 90 %) and the alert defaults.
GREEN, YELLOW, RED = "green", "yellow", "red"


def steps(*pairs: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=color) for value, color in pairs])
    )


BUDGET_STEPS = ((None, GREEN), (0.75, YELLOW), (0.9, RED))
ERROR_RATE_STEPS = ((None, GREEN), (0.10, YELLOW), (0.25, RED))
SUCCESS_STEPS = ((None, RED), (0.75, YELLOW), (0.9, GREEN))
REMAINING_STEPS = ((None, RED), (0.10, YELLOW), (0.25, GREEN))
CREDIT_STEPS = ((None, RED), (10, YELLOW), (25, GREEN))
NEUTRAL_STEPS = ((None, GREEN),)


# --- queries -------------------------------------------------------------------------------------------------------


def promql(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    """A range query (an instant one with `instant`) of the dashboard's Prometheus; `legend` names the series."""
    query = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(PROMETHEUS)
    query = query.legend_format(legend or "__auto").editor_mode(prom_models.QueryEditorMode.CODE)
    return query.instant() if instant else query.range()


Column = tuple[str, str, str]  # (selector in a row, column name, type: string | number | timestamp)


def range_params() -> list[tuple[str, str]]:
    """The dashboard's time range as the API's custom range (Grafana formats the instants as ISO 8601, UTC)."""
    return [("range", "custom"), ("start", "${__from:date:iso}"), ("end", "${__to:date:iso}")]


def filter_params(names: tuple[str, ...] = API_FILTERS) -> list[tuple[str, str]]:
    """The filter variables as API parameters, each a list of double-quoted values (Grafana's doublequote format:
    exact for values holding commas); All is the variable's custom all value `.*`, which the API reads as no
    filter."""
    return [(name, f"${{{name}:doublequote}}") for name in names]


class APIQuery(cogvariants.Dataquery):
    """A query of llmtally's API through the Infinity datasource: GET `path` (relative to the datasource's URL,
    which holds the token), the JSON answer parsed by Infinity's backend parser: `root` selects the rows (a GJSON
    path; an object is one row), `columns` picks and types their fields (none: every field)."""

    def __init__(
        self, path: str, root: str, columns: list[Column], params: list[tuple[str, str]], ref: str, fmt: str
    ) -> None:
        self.path, self.root, self.columns, self.params, self.ref, self.fmt = path, root, columns, params, ref, fmt

    def to_json(self) -> dict[str, Any]:
        return {
            "datasource": API.to_json(),
            "refId": self.ref,
            "type": "json",
            "source": "url",
            "parser": "backend",
            "format": self.fmt,
            "url": self.path,
            "url_options": {"method": "GET", "data": "", "params": [{"key": k, "value": v} for k, v in self.params]},
            "root_selector": self.root,
            "columns": [{"selector": sel, "text": text, "type": kind} for sel, text, kind in self.columns],
        }


class APIRequest(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(
        self,
        path: str,
        root: str = "",
        columns: list[Column] | None = None,
        *,
        params: list[tuple[str, str]] | None = None,
        filters: tuple[str, ...] = API_FILTERS,
        timed: bool = True,
        ref: str = "A",
        fmt: str = "table",
    ) -> None:
        every = [*(range_params() if timed else []), *filter_params(filters), *(params or [])]
        self.query = APIQuery(path, root, list(columns or []), every, ref, fmt)

    def build(self) -> cogvariants.Dataquery:
        return self.query


def usage(root: str, columns: list[Column], group_by: str = "", **kwargs: Any) -> APIRequest:
    """/api/v1/usage over the dashboard's range and filters (grouped by `group_by`)."""
    params = [("group_by", group_by)] if group_by else []
    return APIRequest("/api/v1/usage", root, columns, params=params + kwargs.pop("params", []), **kwargs)


def total(figure: str, kind: str = "number", **kwargs: Any) -> APIRequest:
    """One figure of the usage totals (exact, from the store)."""
    return usage("totals", [(figure, figure, kind)], **kwargs)


# --- variables -----------------------------------------------------------------------------------------------------


def datasource_variable(name: str, label: str, plugin: str) -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable(name).label(label).type(plugin)


def label_variable(name: str, expr: str) -> dashboard.QueryVariable:
    """A multi-value Prometheus label variable with All = `.*` (also matches series without the label)."""
    return _multi_with_all(
        dashboard.QueryVariable(name)
        .label(name.replace("_", " ").capitalize())
        .datasource(PROMETHEUS)
        .query({"query": expr, "refId": f"{name}-variable", "qryType": 1})
    )


def api_variable(name: str) -> dashboard.QueryVariable:
    """A multi-value variable whose values the API lists (usage grouped by it over the range, narrowed by the
    Prometheus-label filters); All = `.*` (no filter)."""
    query = usage("rows", [(name, name, "string")], name, filters=FILTERS).build().to_json()  # type: ignore[attr-defined]
    query["refId"] = f"{name}-variable"
    return _multi_with_all(
        dashboard.QueryVariable(name)
        .label(name.replace("_", " ").capitalize().replace("Api", "API"))
        .datasource(API)
        .query({"queryType": "infinity", "infinityQuery": query, "refId": f"{name}-variable"})
    )


def _multi_with_all(variable: dashboard.QueryVariable) -> dashboard.QueryVariable:
    """Refreshed with the time range, sorted, several values, All (`.*`) selected at first."""
    return (
        variable.refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(ALL)
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
    )


def status_variable() -> dashboard.CustomVariable:
    return (
        dashboard.CustomVariable("status")
        .label("Status")
        .values("success,error")
        .multi(True)
        .include_all(True)
        .all_value(ALL)
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
    )


def variables(api: bool = True) -> list[cogbuilder.Builder[models.VariableModel]]:
    """The datasources (Prometheus; llmtally's API), then environment, provider, model, feature (Prometheus labels,
    each narrowed by the ones before it), then user, API key (from the API) and status."""
    found: list[cogbuilder.Builder[models.VariableModel]] = [
        datasource_variable("datasource", "Prometheus", "prometheus")
    ]
    if api:
        found.append(datasource_variable("api", "llmtally API", INFINITY_TYPE))
    before: list[str] = []
    for name in FILTERS:
        matchers = ",".join(f'{b}=~"${b}"' for b in before)
        selector = f"completion_requests_total{{{matchers}}}" if matchers else "completion_requests_total"
        found.append(label_variable(name, f"label_values({selector}, {name})"))
        before.append(name)
    if api:
        found += [api_variable("user"), api_variable("api_key"), status_variable()]
    return found


ALERTS = 'ALERTS{alertstate="firing",alertname=~"LLM.*"}'


class AlertAnnotation(cogbuilder.Builder[models.AnnotationQuery]):
    """Firing llmtally alerts (Prometheus' ALERTS series: the rules of alert-rules/) as annotations, titled by the
    alert's name, tagged with its severity and family (Grafana's Prometheus annotation options, which the SDK does
    not type)."""

    def build(self) -> models.AnnotationQuery:
        built = (
            dashboard.AnnotationQuery()
            .name("llmtally alerts")
            .datasource(PROMETHEUS)
            .enable(True)
            .icon_color("red")
            .build()
        )
        target = promql(ALERTS, "{{alertname}}", "alerts").build()
        extra = {
            "titleFormat": "{{alertname}}",
            "textFormat": "{{severity}} ({{family}}): {{environment}} {{provider}} {{model}} {{budget}}",
            "tagKeys": "alertname,severity,family",
            "useValueForTime": False,
            "step": "15s",
        }

        class Built(models.AnnotationQuery):
            def to_json(self) -> dict[str, Any]:
                return {**built.to_json(), "target": target.to_json(), **extra}

        return Built()


def alert_annotation() -> AlertAnnotation:
    return AlertAnnotation()


def alert_threshold(key: str, ref: str) -> prometheus.Dataquery:
    """The alert threshold `key` of llmtally.yaml (completion_alert_threshold{alert=key}, what the alert rules
    read), named `key`: for Grafana's "config from query results" transformation."""
    return promql(f'max(completion_alert_threshold{{alert="{key}"}})', key, ref, instant=True)


def thresholds_from(*keys: str, ref: str = "T") -> tuple[list[prometheus.Dataquery], list[dict[str, Any]]]:
    """Queries of the alert thresholds `keys` (refIds T, U, ...) and the transformation that makes them the
    panel's threshold steps (green below, red from each): one number drives the alert and the colours."""
    refs = [chr(ord(ref) + i) for i in range(len(keys))]
    queries = [alert_threshold(key, r) for key, r in zip(keys, refs, strict=True)]
    transformations = [
        {
            "id": "configFromData",
            "options": {
                "configRefId": r,
                "mappings": [{"fieldName": key, "handlerKey": "threshold1"}],
                "applyTo": {"id": "byType", "options": "number"},
            },
        }
        for key, r in zip(keys, refs, strict=True)
    ]
    return queries, transformations


# --- panels --------------------------------------------------------------------------------------------------------


def legend(mode: common_models.LegendDisplayMode = common_models.LegendDisplayMode.LIST) -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .display_mode(mode)
        .placement(common_models.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs([])
    )


def tooltip() -> common.VizTooltipOptions:
    return common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI).sort(common_models.SortOrder.NONE)


def reduce(calc: str = "lastNotNull", rows: bool = False, fields: str = "") -> common.ReduceDataOptions:
    """How a stat or bar gauge reduces its data: a calculation per field, or (`rows`) every row's value."""
    options = common.ReduceDataOptions().calcs([calc]).values(rows)
    return options.fields(fields) if fields else options


Query = prometheus.Dataquery | APIRequest
Thresholds = tuple[tuple[float | None, str], ...]


def _transformations(panel: Any, transformations: list[dict[str, Any]]) -> Any:
    for t in transformations:
        panel = panel.with_transformation(models.DataTransformerConfig(id_val=t["id"], options=t["options"]))
    return panel


def _sources(panel: Any, queries: list[Query]) -> Any:
    """A panel whose queries use several datasources is a mixed one (each query names its own)."""
    kinds = {type(q) for q in queries}
    if len(kinds) > 1:
        return panel.datasource(MIXED)
    return panel.datasource(API if APIRequest in kinds else PROMETHEUS)


def graph(
    title: str,
    unit: str,
    queries: list[Query],
    description: str = "",
    thresholds: Thresholds = NEUTRAL_STEPS,
    width: int = 12,
    stack: bool = False,
    transformations: list[dict[str, Any]] | None = None,
    interval: str = "",
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(8)
        .targets(queries)
        .thresholds(steps(*thresholds))
        .legend(legend())
        .tooltip(tooltip())
        .draw_style(common_models.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common_models.VisibilityMode.NEVER)
        .span_nulls(True)
    )
    if len(thresholds) > 1 or transformations:
        panel = panel.thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.LINE)
        )
    if stack:
        panel = panel.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL).group("A"))
    if interval:
        panel = panel.interval(interval)
    return _transformations(_sources(panel, queries), transformations or [])


def bars_of_interval(
    title: str, unit: str, queries: list[Query], description: str, width: int = 12
) -> timeseries.Panel:
    """Counts per interval: one bar per $__interval (each query's window is the step, so the bars add up)."""
    return (
        graph(title, unit, queries, description, width=width, stack=True)
        .draw_style(common_models.GraphDrawStyle.BARS)
        .fill_opacity(80)
    )


def single(
    title: str,
    unit: str,
    query: Query,
    description: str = "",
    thresholds: Thresholds = NEUTRAL_STEPS,
    width: int = 4,
    extra: list[prometheus.Dataquery] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    zero: bool = True,
) -> stat.Panel:
    """A stat of one value; `extra` queries feed `transformations` (alert thresholds); a missing value shows 0."""
    queries: list[Query] = [query, *(extra or [])]
    coloured = len(thresholds) > 1 or bool(transformations)
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(4)
        .targets(queries)
        .thresholds(steps(*thresholds))
        .color_mode(common_models.BigValueColorMode.BACKGROUND if coloured else common_models.BigValueColorMode.VALUE)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .justify_mode(common_models.BigValueJustifyMode.AUTO)
        .text_mode(common_models.BigValueTextMode.AUTO)
        .percent_change_color_mode(common_models.PercentChangeColorMode.STANDARD)
        .show_percent_change(False)
        .wide_layout(True)
        .orientation(common_models.VizOrientation.AUTO)
        .reduce_options(reduce(fields=_first_field(query)))
        .text(common.VizTextDisplayOptions())
    )
    if zero:
        panel = panel.no_value("0")
    return _transformations(_sources(panel, queries), transformations or [])


def _first_field(query: Query) -> str:
    """The field a stat shows: the API query's first column (the others of a mixed panel are thresholds)."""
    if isinstance(query, APIRequest) and query.query.columns:
        return f"/^{query.query.columns[0][1]}$/"
    return ""


def bars(
    title: str,
    unit: str,
    query: Query,
    description: str = "",
    thresholds: Thresholds = NEUTRAL_STEPS,
    width: int = 8,
    maximum: float | None = None,
    extra: list[prometheus.Dataquery] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    rows: str = "",
) -> bargauge.Panel:
    """A bar per series (Prometheus) or, with `rows` (the value column of an API table), one bar per row."""
    queries: list[Query] = [query, *(extra or [])]
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(8)
        .targets(queries)
        .thresholds(steps(*thresholds))
        .color_scheme(dashboard.FieldColor().mode(models.FieldColorModeId.THRESHOLDS))
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .value_mode(common_models.BarGaugeValueMode.COLOR)
        .name_placement(common_models.BarGaugeNamePlacement.AUTO)
        .show_unfilled(True)
        .sizing(common_models.BarGaugeSizing.AUTO)
        .min_viz_width(8)
        .min_viz_height(16)
        .max_viz_height(300)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .reduce_options(reduce(rows=bool(rows), fields=f"/^{rows}$/" if rows else ""))
        .legend(legend())
        .text(common.VizTextDisplayOptions())
        .min(0)
    )
    panel = panel.max(maximum) if maximum is not None else panel
    return _transformations(_sources(panel, queries), transformations or [])


def top(field: str, count: int = 10) -> list[dict[str, Any]]:
    """Rows sorted by `field`, largest first, the first `count` kept (Grafana's sortBy and limit)."""
    return [
        {"id": "sortBy", "options": {"sort": [{"field": field, "desc": True}]}},
        {"id": "limit", "options": {"limitField": count}},
    ]


def grid(
    title: str,
    queries: list[Query],
    description: str = "",
    width: int = 24,
    transformations: list[dict[str, Any]] | None = None,
    height: int = 10,
) -> table.Panel:
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .span(width)
        .height(height)
        .targets(queries)
        .thresholds(steps(*NEUTRAL_STEPS))
        .frame_index(0)
        .show_header(True)
        .cell_height(common_models.TableCellHeight.SM)
        .footer(common.TableFooterOptions().show(False).reducer(["sum"]).count_rows(False))
        .align(common_models.FieldTextAlignment.AUTO)
        .cell_options(common_models.TableAutoCellOptions())
        .inspect(False)
    )
    return _transformations(_sources(panel, queries), transformations or [])


def alert_list(title: str = "Active alerts", width: int = 24) -> Any:
    """Grafana's alert list of the firing and pending rules of the Prometheus datasource (the rules of
    alert-rules/); silences in the Alertmanager datasource are how an alert is acknowledged."""
    return AlertListPanel(title, width)


class AlertListPanel(cogbuilder.Builder[models.Panel]):
    """The alertlist panel (the SDK has no builder for it): its options as Grafana 11.6 stores them."""

    def __init__(self, title: str, width: int) -> None:
        self.title, self.width = title, width

    def build(self) -> models.Panel:
        title, width = self.title, self.width

        class Built(models.Panel):
            def to_json(self) -> dict[str, Any]:
                return {
                    "id": self.id_val,
                    "type": "alertlist",
                    "title": title,
                    "description": "Firing and pending llmtally alerts (LLM*) evaluated by the Prometheus datasource. "
                    "Acknowledge one with an Alertmanager silence (Alerting > Silences, the Alertmanager "
                    "datasource).",
                    "gridPos": self.grid_pos.to_json() if self.grid_pos else {"h": 8, "w": width, "x": 0, "y": 0},
                    "options": {
                        "viewMode": "list",
                        "groupMode": "default",
                        "groupBy": [],
                        "maxItems": 20,
                        "sortOrder": 3,
                        "dashboardAlerts": False,
                        "alertName": "LLM",
                        "alertInstanceLabelFilter": "",
                        "datasource": "Prometheus",
                        "showInstances": True,
                        "showInactiveAlerts": False,
                        "stateFilter": {
                            "firing": True,
                            "pending": True,
                            "recovering": False,
                            "noData": False,
                            "normal": False,
                            "error": True,
                        },
                    },
                }

        built = Built()
        built.grid_pos = models.GridPos(h=8, w=width)
        return built


def new_dashboard(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["llmtally", "llm"])
        .editable()
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .time("now-24h", "now")
        .timezone("browser")
        .refresh("1m")
        .timepicker(dashboard.TimePicker().refresh_intervals(["30s", "1m", "5m", "15m", "1h"]))
        .link(
            dashboard.DashboardLink("llmtally")
            .type(models.DashboardLinkType.DASHBOARDS)
            .tags(["llmtally"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
