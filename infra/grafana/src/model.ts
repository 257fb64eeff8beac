// One definition of every panel and alert query, independent of the store's query language.
// flux.ts and promql.ts turn a SeriesQuery into the text each datasource runs.

/** How points of one series are combined over a window. */
export type Reducer = "mean" | "max" | "min" | "last";

/**
 * What a query computes from one stored field:
 * - gauge: the reducer over each window (temperature, latency percentile, online flag);
 * - rate: per-second rate of a cumulative counter that may reset when its writer restarts;
 * - increase: how much a cumulative counter grew within each window;
 * - arrivals: stored points per second (one point per accepted message);
 * - age: seconds since the newest point (how long a board has been silent);
 * - state: the value in force at each instant, for series written only when they change (a board's
 *   online flag): the newest point up to lookbackS earlier counts.
 */
export type Aggregation =
  | { kind: "gauge"; reducer: Reducer }
  | { kind: "rate" }
  | { kind: "increase" }
  | { kind: "arrivals" }
  | { kind: "age" }
  | { kind: "state"; lookbackS: number };

/** Combining the per-series results into one series per `by` group. */
export type Across = "sum" | "max" | "min" | "mean";

/** A tag matched against a dashboard variable used as a regular expression (multi-value, "All" = `.*`). */
export interface TagFilter {
  tag: string;
  variable: string;
}

export interface SeriesQuery {
  /** InfluxDB measurement; VictoriaMetrics stores the field as `<measurement>_<field>`. */
  measurement: string;
  field: string;
  aggregation: Aggregation;
  filters?: readonly TagFilter[];
  /** Series are combined across everything but these tags when `across` is set. */
  across?: Across;
  by?: readonly string[];
  /** Divides every value (stack voltage / cells). */
  divideBy?: number;
  /** Legend: tag names in braces, e.g. "{{sensor_id}}", or plain text. */
  legend: string;
}

/** Dashboards follow Grafana's time picker; alerts look back over a fixed window. */
export type Window = { mode: "dashboard" } | { mode: "fixed"; seconds: number };

export type DatasourceKind = "influxdb" | "victoriametrics";

/** `{{tag}}` placeholders of a legend, so both generators name series the same way. */
export function legendTags(legend: string): string[] {
  return [...legend.matchAll(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g)].map((m) => m[1] as string);
}
