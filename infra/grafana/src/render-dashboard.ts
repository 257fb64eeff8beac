// DashboardDef + datasource kind → Grafana dashboard JSON, through grafana-foundation-sdk.
import type * as cog from "@grafana/grafana-foundation-sdk/cog";
import * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import * as common from "@grafana/grafana-foundation-sdk/common";
import * as prometheus from "@grafana/grafana-foundation-sdk/prometheus";
import * as stat from "@grafana/grafana-foundation-sdk/stat";
import * as table from "@grafana/grafana-foundation-sdk/table";
import * as timeseries from "@grafana/grafana-foundation-sdk/timeseries";
import { DATASOURCES, type DatasourceSpec } from "./config";
import type { DashboardDef, PanelDef, TagVariableDef } from "./dashboard-model";
import type { DatasourceKind, SeriesQuery } from "./model";
import { queryText, refIdOf, variableQueryText } from "./queries";

const DATASOURCE_VARIABLE = "datasource";

/** The SDK has no InfluxDB query type; Grafana's InfluxDB datasource reads `query` in Flux mode. */
class FluxQueryBuilder implements cog.Builder<cog.Dataquery> {
  constructor(private readonly target: { refId: string; query: string; datasource: common.DataSourceRef }) {}
  build(): cog.Dataquery {
    return { ...this.target, _implementsDataqueryVariant: () => undefined };
  }
}

function datasourceRef(spec: DatasourceSpec): common.DataSourceRef {
  return { type: spec.type, uid: `\${${DATASOURCE_VARIABLE}}` };
}

/** "{{sensor_id}} p99" → Grafana display-name template, the same for Flux and Prometheus frames. */
export function displayNameOf(legend: string): string {
  return legend.replace(
    /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g,
    (_m, tag: string) => `\${__field.labels.${tag}}`,
  );
}

function target(
  spec: DatasourceSpec,
  q: SeriesQuery,
  refId: string,
  instant: boolean,
): cog.Builder<cog.Dataquery> {
  const text = queryText(spec.kind, q, { mode: "dashboard" });
  if (spec.kind === "influxdb")
    return new FluxQueryBuilder({ refId, query: text, datasource: datasourceRef(spec) });
  const b = new prometheus.DataqueryBuilder()
    .refId(refId)
    .datasource(datasourceRef(spec))
    .expr(text)
    .legendFormat(q.legend)
    .editorMode(prometheus.QueryEditorMode.Code);
  return instant ? b.instant().format(prometheus.PromQueryFormat.Table) : b.range();
}

function thresholdsOf(p: PanelDef): dashboard.ThresholdsConfigBuilder | undefined {
  if (!p.thresholds) return undefined;
  return new dashboard.ThresholdsConfigBuilder()
    .mode(dashboard.ThresholdsMode.Absolute)
    .steps(p.thresholds.map((s) => ({ value: s.value, color: s.color })));
}

type AnyPanelBuilder = timeseries.PanelBuilder | stat.PanelBuilder | table.PanelBuilder;

function panelOf(spec: DatasourceSpec, p: PanelDef, id: number): AnyPanelBuilder {
  let b: AnyPanelBuilder;
  if (p.visual === "timeseries") {
    const ts = new timeseries.PanelBuilder()
      .legend(
        new common.VizLegendOptionsBuilder()
          .showLegend(true)
          .displayMode(common.LegendDisplayMode.List)
          .placement(common.LegendPlacement.Bottom),
      )
      .lineWidth(1)
      .fillOpacity(10)
      .spanNulls(false);
    if (p.thresholds && p.thresholds.length > 1) {
      ts.thresholdsStyle(
        new common.GraphThresholdsStyleConfigBuilder().mode(common.GraphThresholdsStyleMode.DashedAndArea),
      );
    }
    b = ts;
  } else if (p.visual === "stat") {
    b = new stat.PanelBuilder()
      .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(["lastNotNull"]).values(false))
      .colorMode(common.BigValueColorMode.Background)
      .graphMode(common.BigValueGraphMode.Area);
  } else {
    b = new table.PanelBuilder();
  }
  b.id(id).title(p.title).datasource(datasourceRef(spec)).span(p.width).height(p.height);
  if (p.description) b.description(p.description);
  if (p.unit) b.unit(p.unit);
  if (p.decimals !== undefined) b.decimals(p.decimals);
  const th = thresholdsOf(p);
  if (th) {
    b.thresholds(th);
    if (p.visual === "timeseries")
      b.colorScheme(new dashboard.FieldColorBuilder().mode(dashboard.FieldColorModeId.PaletteClassic));
  }
  p.queries.forEach((q, i) => {
    const refId = refIdOf(i);
    b.withTarget(target(spec, q, refId, p.instant === true));
    b.overrideByQuery(refId, [{ id: "displayName", value: displayNameOf(q.legend) }]);
  });
  return b;
}

function tagVariable(spec: DatasourceSpec, v: TagVariableDef): dashboard.QueryVariableBuilder {
  return (
    new dashboard.QueryVariableBuilder(v.name)
      .label(v.label)
      .datasource(datasourceRef(spec))
      .query(variableQueryText(spec.kind, v))
      .definition(variableQueryText(spec.kind, v))
      .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
      .sort(dashboard.VariableSort.AlphabeticalAsc)
      .multi(true)
      .includeAll(true)
      // "All" becomes `.*` in every regex match instead of a list of every board.
      .allValue(".*")
      .current({ selected: true, text: "All", value: "$__all" })
  );
}

export function dashboardUid(def: DashboardDef, kind: DatasourceKind): string {
  return kind === "influxdb" ? def.uid : `${def.uid}-vm`;
}

export function renderDashboard(def: DashboardDef, kind: DatasourceKind): dashboard.Dashboard {
  const spec = DATASOURCES[kind];
  const b = new dashboard.DashboardBuilder(def.title)
    .uid(dashboardUid(def, kind))
    .description(def.description)
    .tags([...def.tags, kind])
    .editable()
    .tooltip(dashboard.DashboardCursorSync.Crosshair)
    .time({ from: def.from, to: "now" })
    .timezone("browser")
    .refresh(def.refresh)
    .withVariable(
      new dashboard.DatasourceVariableBuilder(DATASOURCE_VARIABLE)
        .label("Datasource")
        .type(spec.type)
        .current({ selected: true, text: spec.name, value: spec.uid }),
    );
  for (const v of def.variables) b.withVariable(tagVariable(spec, v));
  // Stable panel ids (links and alert annotations refer to them), in layout order.
  let id = 0;
  for (const row of def.rows) {
    b.withRow(new dashboard.RowBuilder(row.title).id(++id));
    for (const p of row.panels) b.withPanel(panelOf(spec, p, ++id));
  }
  return b.build();
}
