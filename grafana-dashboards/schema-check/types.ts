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

/** The PostgreSQL datasource's raw SQL query (the shape Grafana's SQL datasources store). */
export interface SQLQuery extends Omit<schema.DataQuery, "datasource"> {
  datasource: Ref<"grafana-postgresql-datasource">;
  rawSql: string;
  rawQuery: true;
  format: "table" | "time_series";
  editorMode: "code" | "builder";
}

export type Query = PrometheusQuery | SQLQuery;

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
  datasource?: Ref<"prometheus" | "grafana-postgresql-datasource">;
};

export type Panel =
  | PanelOf<"timeseries", TimeSeries.Options, TimeSeries.FieldConfig>
  | PanelOf<"stat", Stat.Options, never>
  | PanelOf<"bargauge", BarGauge.Options, never>
  | PanelOf<"table", Table.Options, Table.FieldConfig>;

export type Row = Omit<raw.RowPanel, "panels"> & { panels: Panel[] };

export type Variable = Omit<raw.VariableModel, "datasource"> & {
  datasource?: Ref<"prometheus" | "grafana-postgresql-datasource">;
};

export type Annotation = Omit<raw.AnnotationQuery, "target" | "datasource"> & {
  datasource: Ref<"prometheus">;
  target: PrometheusQuery;
};

export type Dashboard = Json<
  Omit<raw.Dashboard, "panels" | "annotations" | "templating"> & {
    uid: string;
    panels: (Panel | Row)[];
    annotations?: { list?: Annotation[] };
    templating: { list: Variable[] };
  }
>;
