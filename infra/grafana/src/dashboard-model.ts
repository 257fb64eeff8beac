// Dashboards and alert rules as data: what to show, never how a datasource spells it.
import type { SeriesQuery } from "./model";

export interface ThresholdStep {
  /** null = the base colour below the first limit. */
  value: number | null;
  color: "green" | "red" | "orange" | "blue";
}

export interface PanelDef {
  title: string;
  description?: string;
  visual: "timeseries" | "stat" | "table";
  /** Grafana unit id ("celsius", "ms", "reqps", "suffix: sccm"). */
  unit?: string;
  decimals?: number;
  thresholds?: readonly ThresholdStep[];
  /** Refs A, B, … in order. */
  queries: readonly SeriesQuery[];
  /** Out of 24 columns. */
  width: number;
  height: number;
  /** One value per series (table of current values) instead of a time series. */
  instant?: boolean;
}

export interface RowDef {
  title: string;
  panels: readonly PanelDef[];
}

/** A dashboard variable listing the values of one tag; panels match it as a regex. */
export interface TagVariableDef {
  name: string;
  label: string;
  tag: string;
  /** The series whose tag values are listed. */
  measurement: string;
  field: string;
}

export interface DashboardDef {
  /** Stable id; the datasource kind is appended for each generated variant. */
  uid: string;
  title: string;
  description: string;
  tags: readonly string[];
  variables: readonly TagVariableDef[];
  rows: readonly RowDef[];
  refresh: string;
  /** Default time range, e.g. "now-1h". */
  from: string;
}

export interface AlertDef {
  uid: string;
  title: string;
  summary: string;
  /** One series per board (`across` with `by: ["sensor_id"]`). */
  query: SeriesQuery;
  /** The rule fires when the value is above/below the limit. */
  comparison: "above" | "below";
  limit: number;
  /** Look-back of the query, seconds. */
  windowS: number;
  /** How long the condition must hold before the rule fires. */
  forDuration: string;
  severity: "critical" | "warning";
}
