"""Building blocks for the llmtally dashboards, on grafana-foundation-sdk: datasources, variables, queries, panels.

Every Prometheus panel filters with `SELECT` (environment, provider, model, feature); the store-derived gauges
(budgets, credits, spend, thresholds) are the same on every replica and are aggregated with `max`, counters and
histograms with `sum`.
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
POSTGRES_TYPE = "grafana-postgresql-datasource"
POSTGRES = models.DataSourceRef(type_val=POSTGRES_TYPE, uid="${audit_datasource}")

FILTERS = ("environment", "provider", "model", "feature")
SELECT = ",".join(f'{name}=~"${name}"' for name in FILTERS)
"""The label matchers of the dashboard variables, for the families that carry all four labels."""
SELECT_PROVIDER_MODEL = 'provider=~"$provider",model=~"$model"'
SELECT_ENVIRONMENT = 'environment=~"$environment"'
# SQL filters on the audit store: the same variables, as anchored regexes (NULL columns match as "").
SQL_WHERE = " AND ".join(
    f"COALESCE({column}, '') ~ '^${{{name}:regex}}$'"
    for name, column in (
        ("environment", "environment"),
        ("provider", "provider"),
        ("model", "request_model"),
        ("feature", "feature"),
    )
)

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


class SQLQuery(cogvariants.Dataquery):
    """A query of Grafana's PostgreSQL datasource (the SDK has no builder for it)."""

    def __init__(self, raw_sql: str, ref: str, fmt: str) -> None:
        self.raw_sql, self.ref, self.fmt = raw_sql, ref, fmt

    def to_json(self) -> dict[str, Any]:
        return {
            "datasource": POSTGRES.to_json(),
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref,
        }


class SQL(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, raw_sql: str, ref: str = "A", fmt: str = "table") -> None:
        self.query = SQLQuery(" ".join(raw_sql.split()), ref, fmt)

    def build(self) -> cogvariants.Dataquery:
        return self.query


# --- variables -----------------------------------------------------------------------------------------------------


def datasource_variable(name: str, label: str, plugin: str) -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable(name).label(label).type(plugin)


def label_variable(name: str, expr: str) -> dashboard.QueryVariable:
    """A multi-value Prometheus label variable with All = `.*` (also matches series without the label)."""
    return (
        dashboard.QueryVariable(name)
        .label(name.capitalize())
        .datasource(PROMETHEUS)
        .query({"query": expr, "refId": f"{name}-variable", "qryType": 1})
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
    )


def prometheus_variables() -> list[cogbuilder.Builder[models.VariableModel]]:
    """datasource, then environment, provider, model, feature: each narrowed by the ones before it."""
    found: list[cogbuilder.Builder[models.VariableModel]] = [
        datasource_variable("datasource", "Prometheus", "prometheus")
    ]
    before: list[str] = []
    for name in FILTERS:
        matchers = ",".join(f'{b}=~"${b}"' for b in before)
        selector = f"completion_requests_total{{{matchers}}}" if matchers else "completion_requests_total"
        found.append(label_variable(name, f"label_values({selector}, {name})"))
        before.append(name)
    return found


def audit_datasource_variable() -> dashboard.DatasourceVariable:
    return datasource_variable("audit_datasource", "Audit store (PostgreSQL)", POSTGRES_TYPE)


def sql_variables() -> list[cogbuilder.Builder[models.VariableModel]]:
    """The audit store's datasource and the same filters, their values read from the store."""
    found: list[cogbuilder.Builder[models.VariableModel]] = [audit_datasource_variable()]
    for name, column in (
        ("environment", "environment"),
        ("provider", "provider"),
        ("model", "request_model"),
        ("feature", "feature"),
    ):
        sql = f"SELECT DISTINCT {column} FROM completion_records WHERE {column} IS NOT NULL ORDER BY 1"
        found.append(
            dashboard.QueryVariable(name)
            .label(name.capitalize())
            .datasource(POSTGRES)
            .query(sql)
            .refresh(models.VariableRefresh.ON_DASHBOARD_LOAD)
            .sort(models.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(models.VariableOption(selected=True, text="All", value="$__all"))
        )
    return found


class _QueryTarget(cogbuilder.Builder[models.AnnotationTarget]):
    """An annotation's target that is a datasource query (the SDK only types the built-in annotation's)."""

    def __init__(self, query: prometheus.Dataquery) -> None:
        self.query = query

    def build(self) -> models.AnnotationTarget:
        return self.query.build()  # type: ignore[return-value]


ALERTS = 'ALERTS{alertstate="firing",alertname=~"LLM.*"}'


def alert_annotation() -> dashboard.AnnotationQuery:
    """Firing llmtally alerts (Prometheus' ALERTS series: the rules of alert-rules/) as annotations."""
    query = promql(ALERTS, "{{alertname}} {{severity}}", "alerts")
    return (
        dashboard.AnnotationQuery()
        .name("llmtally alerts")
        .datasource(PROMETHEUS)
        .enable(True)
        .icon_color("red")
        .target(_QueryTarget(query))
    )


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


def reduce(calc: str = "lastNotNull") -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs([calc]).values(False)


def graph(
    title: str,
    unit: str,
    queries: list[prometheus.Dataquery | SQL],
    description: str = "",
    thresholds: tuple[tuple[float | None, str], ...] = NEUTRAL_STEPS,
    width: int = 12,
    stack: bool = False,
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
    if len(thresholds) > 1:
        panel = panel.thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.LINE)
        )
    if stack:
        panel = panel.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL).group("A"))
    return panel


def single(
    title: str,
    unit: str,
    query: prometheus.Dataquery | SQL,
    description: str = "",
    thresholds: tuple[tuple[float | None, str], ...] = NEUTRAL_STEPS,
    width: int = 4,
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(4)
        .with_target(query)
        .thresholds(steps(*thresholds))
        .color_mode(
            common_models.BigValueColorMode.BACKGROUND if len(thresholds) > 1 else common_models.BigValueColorMode.VALUE
        )
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .justify_mode(common_models.BigValueJustifyMode.AUTO)
        .text_mode(common_models.BigValueTextMode.AUTO)
        .percent_change_color_mode(common_models.PercentChangeColorMode.STANDARD)
        .show_percent_change(False)
        .wide_layout(True)
        .orientation(common_models.VizOrientation.AUTO)
        .reduce_options(reduce())
        .text(common.VizTextDisplayOptions())
    )


def bars(
    title: str,
    unit: str,
    query: prometheus.Dataquery,
    description: str = "",
    thresholds: tuple[tuple[float | None, str], ...] = NEUTRAL_STEPS,
    width: int = 8,
    maximum: float | None = None,
) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(8)
        .with_target(query)
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
        .reduce_options(reduce())
        .legend(legend())
        .text(common.VizTextDisplayOptions())
        .min(0)
    )
    return panel.max(maximum) if maximum is not None else panel


def grid(title: str, queries: list[SQL | prometheus.Dataquery], description: str = "", width: int = 24) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .span(width)
        .height(10)
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
