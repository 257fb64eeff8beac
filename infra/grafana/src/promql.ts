// SeriesQuery → PromQL/MetricsQL for Grafana's Prometheus datasource pointed at VictoriaMetrics,
// which stores InfluxDB line protocol field f of measurement m as the metric `m_f`.
import type { Across, Reducer, SeriesQuery, Window } from "./model";

const OVER_TIME: Record<Reducer, string> = {
  mean: "avg_over_time",
  max: "max_over_time",
  min: "min_over_time",
  last: "last_over_time",
};
const ACROSS_OP: Record<Across, string> = { sum: "sum", max: "max", min: "min", mean: "avg" };

export function metricName(measurement: string, field: string): string {
  return `${measurement}_${field}`;
}

export function toPromQL(q: SeriesQuery, window: Window): string {
  const matchers = (q.filters ?? []).map((f) => `${f.tag}=~"$${f.variable}"`);
  const selector = `${metricName(q.measurement, q.field)}${matchers.length ? `{${matchers.join(", ")}}` : ""}`;
  const dashboard = window.mode === "dashboard";
  const step = dashboard ? "$__interval" : `${window.seconds}s`;
  const rateWindow = dashboard ? "$__rate_interval" : `${window.seconds}s`;
  const stepSeconds = dashboard ? "($__interval_ms / 1000)" : String(window.seconds);

  const a = q.aggregation;
  let expr: string;
  switch (a.kind) {
    case "gauge":
      expr = `${OVER_TIME[a.reducer]}(${selector}[${step}])`;
      break;
    case "rate":
      expr = `rate(${selector}[${rateWindow}])`;
      break;
    case "increase":
      expr = `increase(${selector}[${step}])`;
      break;
    case "arrivals":
      expr = `count_over_time(${selector}[${step}]) / ${stepSeconds}`;
      break;
    case "state":
      expr = `last_over_time(${selector}[${a.lookbackS}s])`;
      break;
    case "age":
      // MetricsQL lag(): seconds from the newest sample in the window to the evaluation time.
      expr = `lag(${selector}[${dashboard ? "$__range" : `${window.seconds}s`}])`;
      break;
  }
  if (q.divideBy !== undefined) expr = `(${expr}) / ${q.divideBy}`;
  if (q.across) expr = `${ACROSS_OP[q.across]} by (${(q.by ?? []).join(", ")}) (${expr})`;
  return expr;
}
