// AlertDef[] + datasource kind → a Grafana alerting provisioning file (apiVersion 1, groups).
// Rules are built with grafana-foundation-sdk's alerting builders (the HTTP API's shape) and then
// laid out as the file provisioning format expects: group-level org, folder and interval.
import * as alerting from "@grafana/grafana-foundation-sdk/alerting";
import type * as cog from "@grafana/grafana-foundation-sdk/cog";
import * as expr from "@grafana/grafana-foundation-sdk/expr";
import * as prometheus from "@grafana/grafana-foundation-sdk/prometheus";
import { ALERT_LIMITS, DATASOURCES } from "./config";
import type { AlertDef } from "./dashboard-model";
import type { DatasourceKind } from "./model";
import { queryText } from "./queries";

const EXPRESSION_DATASOURCE = "__expr__";

class FluxAlertQueryBuilder implements cog.Builder<cog.Dataquery> {
  constructor(
    private readonly model: { refId: string; query: string; intervalMs: number; maxDataPoints: number },
  ) {}
  build(): cog.Dataquery {
    return { ...this.model, _implementsDataqueryVariant: () => undefined };
  }
}

function ruleOf(def: AlertDef, kind: DatasourceKind): alerting.Rule {
  const spec = DATASOURCES[kind];
  const text = queryText(kind, def.query, { mode: "fixed", seconds: def.windowS });
  const model: cog.Builder<cog.Dataquery> =
    kind === "influxdb"
      ? new FluxAlertQueryBuilder({ refId: "A", query: text, intervalMs: 1000, maxDataPoints: 43200 })
      : new prometheus.DataqueryBuilder().refId("A").expr(text).instant().legendFormat(def.query.legend);
  const threshold = new expr.TypeThresholdBuilder()
    .refId("B")
    .expression("A")
    .conditions([{ evaluator: { type: def.comparison === "above" ? "gt" : "lt", params: [def.limit] } }]);
  return (
    new alerting.RuleBuilder(def.title)
      .uid(kind === "influxdb" ? def.uid : `${def.uid}-vm`)
      .condition("B")
      .withQuery(
        new alerting.QueryBuilder("A")
          .datasourceUid(spec.uid)
          .relativeTimeRange({ from: def.windowS, to: 0 })
          .model(model),
      )
      .withQuery(new alerting.QueryBuilder("B").datasourceUid(EXPRESSION_DATASOURCE).model(threshold))
      // A failing query or missing data must not hide a safety condition: both page someone.
      .noDataState(def.uid === "est-board-silent" ? "OK" : "NoData")
      .execErrState("Error")
      .forDuration(def.forDuration)
      .labels({ severity: def.severity, store: kind })
      .annotations({ summary: def.summary })
      .build()
  );
}

/** JSON without the SDK's marker methods, with keys in a fixed order. */
function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

export function alertGroupName(kind: DatasourceKind): string {
  return `electrolyser-safety-${kind}`;
}

export function renderAlertProvisioning(
  defs: readonly AlertDef[],
  kind: DatasourceKind,
): Record<string, unknown> {
  const spec = DATASOURCES[kind];
  const rules = defs.map((d) => {
    const r = plain(ruleOf(d, kind));
    return {
      uid: r.uid,
      title: r.title,
      condition: r.condition,
      data: r.data,
      noDataState: r.noDataState,
      execErrState: r.execErrState,
      for: r.for,
      labels: r.labels,
      annotations: r.annotations,
      isPaused: false,
    };
  });
  return {
    apiVersion: 1,
    groups: [
      {
        orgId: 1,
        name: alertGroupName(kind),
        folder: spec.grafanaFolder,
        interval: `${ALERT_LIMITS.evaluateEveryS}s`,
        rules,
      },
    ],
  };
}
