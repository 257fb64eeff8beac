// The query text of every panel and alert for one datasource kind: what the generator embeds
// and what the tests run against real parsers and a real VictoriaMetrics.
import { TELEMETRY_BUCKET } from "./config";
import type { AlertDef, DashboardDef, TagVariableDef } from "./dashboard-model";
import { toFlux, fluxString } from "./flux";
import type { DatasourceKind, SeriesQuery, Window } from "./model";
import { metricName, toPromQL } from "./promql";

export function queryText(kind: DatasourceKind, q: SeriesQuery, window: Window): string {
  return kind === "influxdb" ? toFlux(q, TELEMETRY_BUCKET, window) : toPromQL(q, window);
}

/** The variable's options query: Flux for InfluxDB, Grafana's label_values() for Prometheus datasources. */
export function variableQueryText(kind: DatasourceKind, v: TagVariableDef): string {
  if (kind === "victoriametrics") return `label_values(${metricName(v.measurement, v.field)}, ${v.tag})`;
  return [
    `import "influxdata/influxdb/schema"`,
    "",
    `schema.tagValues(`,
    `  bucket: ${fluxString(TELEMETRY_BUCKET)},`,
    `  tag: ${fluxString(v.tag)},`,
    `  predicate: (r) => r._measurement == ${fluxString(v.measurement)} and r._field == ${fluxString(v.field)},`,
    `  start: v.timeRangeStart,`,
    `)`,
  ].join("\n");
}

export interface LabelledQuery {
  /** Where it is used: "<dashboard> / <panel> / <refId>" or "alert <uid>". */
  where: string;
  text: string;
  query?: SeriesQuery;
  window?: Window;
  instant?: boolean;
}

export const refIdOf = (i: number): string => String.fromCharCode(65 + i);

/** Every query text of the given dashboards and alert rules, labelled for test messages. */
export function allQueries(
  kind: DatasourceKind,
  dashboards: readonly DashboardDef[],
  alerts: readonly AlertDef[],
): LabelledQuery[] {
  const out: LabelledQuery[] = [];
  const dashboardWindow: Window = { mode: "dashboard" };
  for (const d of dashboards) {
    for (const v of d.variables)
      out.push({ where: `${d.title} / variable ${v.name}`, text: variableQueryText(kind, v) });
    for (const row of d.rows) {
      for (const p of row.panels) {
        p.queries.forEach((q, i) =>
          out.push({
            where: `${d.title} / ${p.title} / ${refIdOf(i)}`,
            text: queryText(kind, q, dashboardWindow),
            query: q,
            window: dashboardWindow,
            instant: p.instant === true,
          }),
        );
      }
    }
  }
  for (const a of alerts) {
    const window: Window = { mode: "fixed", seconds: a.windowS };
    out.push({
      where: `alert ${a.uid}`,
      text: queryText(kind, a.query, window),
      query: a.query,
      window,
      instant: true,
    });
  }
  return out;
}
