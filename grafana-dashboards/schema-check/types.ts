/**
 * The shape a generated dashboard must have, from @grafana/schema's types (the Grafana version the dashboards
 * target). JSON holds the string values of TypeScript's string enums, so `Json<T>` turns every string enum in `T`
 * into the union of its values; everything else (unknown keys, wrong types, bad enum values) stays an error.
 */
import type * as schema from "@grafana/schema";
import type * as raw from "schema-raw/dashboard/x/dashboard_types.gen";
import type * as BarGauge from "schema-raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen";
import type * as Stat from "schema-raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as Table from "schema-raw/composable/table/panelcfg/x/TablePanelCfg_types.gen";
import type * as TimeSeries from "schema-raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

/** `T` with every string enum replaced by its string values, recursively. */
export type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends readonly (infer U)[]
      ? Json<U>[]
      : { [K in keyof T]: Json<T[K]> };

type Ref<Type extends string> = { type: Type; uid: string };

/** The Prometheus datasource's query (its dataquery schema ships with the plugin, not with @grafana/schema). */
export interface PrometheusQuery extends Omit<schema.DataQuery, "datasource"> {
  datasource: Ref<"prometheus">;
  expr: string;
  editorMode?: "code" | "builder";
  format?: "time_series" | "table" | "heatmap";
  instant?: boolean;
  range?: boolean;
  exemplar?: boolean;
  legendFormat?: string;
  interval?: string;
  intervalFactor?: number;
}

/** llmtally's API through the Infinity datasource (yesoreyeram-infinity-datasource 3.11.1): a JSON URL query parsed
 * by the plugin's backend parser (pkg/models/query.go of the plugin; only the fields the dashboards use). */
export interface InfinityQuery extends Omit<schema.DataQuery, "datasource"> {
  datasource: Ref<"yesoreyeram-infinity-datasource">;
  type: "json";
  source: "url";
  parser: "backend";
  format: "table" | "timeseries";
  url: string;
  url_options: { method: "GET"; data: string; params: { key: string; value: string }[] };
  root_selector: string;
  columns: { selector: string; text: string; type: "string" | "number" | "timestamp" }[];
}

/** An Infinity variable query (src/types/variables.types.ts of the plugin). */
export interface InfinityVariableQuery {
  queryType: "infinity";
  refId: string;
  infinityQuery: InfinityQuery;
}

export type Query = PrometheusQuery | InfinityQuery;

type Sources = "prometheus" | "yesoreyeram-infinity-datasource" | "datasource";

interface FieldConfigSource<Custom> {
  defaults: Omit<raw.FieldConfig, "custom"> & { custom?: Custom };
  overrides: raw.FieldConfigSource["overrides"];
}

type PanelOf<Type extends string, Options, Custom> = Omit<
  raw.Panel,
  "type" | "options" | "fieldConfig" | "targets" | "datasource"
> & {
  type: Type;
  options: Options;
  fieldConfig: FieldConfigSource<Custom>;
  targets: Query[];
  datasource?: Ref<Sources>;
};

/** Grafana 11.6's alert list (public/app/plugins/panel/alertlist/types.ts: it ships no schema). */
export interface AlertListOptions {
  viewMode: "list" | "stat";
  groupMode: "default" | "custom";
  groupBy: string[];
  maxItems: number;
  sortOrder: 1 | 2 | 3 | 4 | 5;
  dashboardAlerts: boolean;
  alertName: string;
  alertInstanceLabelFilter: string;
  datasource: string;
  showInstances: boolean;
  showInactiveAlerts: boolean;
  folder?: { uid: string; title: string };
  stateFilter: {
    firing: boolean;
    pending: boolean;
    recovering: boolean;
    noData: boolean;
    normal: boolean;
    error: boolean;
  };
}

type AlertListPanel = Pick<raw.Panel, "id" | "title" | "description" | "gridPos"> & {
  type: "alertlist";
  options: AlertListOptions;
};

export type Panel =
  | PanelOf<"timeseries", TimeSeries.Options, TimeSeries.FieldConfig>
  | PanelOf<"stat", Stat.Options, never>
  | PanelOf<"bargauge", BarGauge.Options, never>
  | PanelOf<"table", Table.Options, Table.FieldConfig>
  | AlertListPanel;

export type Row = Omit<raw.RowPanel, "panels"> & { panels: Panel[] };

export type Variable = Omit<raw.VariableModel, "datasource" | "query"> & {
  datasource?: Ref<"prometheus" | "yesoreyeram-infinity-datasource">;
  query?: string | { query: string; refId: string; qryType: number } | InfinityVariableQuery;
};

/** The Prometheus annotation's own options (grafana-prometheus' annotation support reads them from the annotation):
 * the event title and text from the series' labels, and the labels that become tags. */
export type Annotation = Omit<raw.AnnotationQuery, "target" | "datasource"> & {
  datasource: Ref<"prometheus">;
  target: PrometheusQuery;
  titleFormat: string;
  textFormat: string;
  tagKeys: string;
  useValueForTime: boolean;
  step: string;
};

export type Dashboard = Json<
  Omit<raw.Dashboard, "panels" | "annotations" | "templating"> & {
    uid: string;
    panels: (Panel | Row)[];
    annotations?: { list?: Annotation[] };
    templating: { list: Variable[] };
  }
>;
