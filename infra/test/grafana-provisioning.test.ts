// Grafana as code: the provisioning YAML parses and points at what exists, the committed dashboards
// and alert rules are exactly what the generator produces, and panels show the channels' units and
// safe ranges.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { CHANNEL_NAMES, CHANNELS } from "../../firmware/src/telemetry/channels";
import { ALERT_LIMITS, DATASOURCES } from "../grafana/src/config";
import { ALERTS, DASHBOARDS, DATASOURCE_KINDS, generatedFiles } from "../grafana/src/outputs";
import { renderDashboard } from "../grafana/src/render-dashboard";
import { telemetryDashboard } from "../grafana/src/definitions/telemetry";
import { repoRoot } from "../../shared/state-dir";

const grafanaDir = join(repoRoot(), "infra/grafana");

async function yamlFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await yamlFiles(p)));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out;
}

interface Panel {
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: { refId: string; query?: string; expr?: string; datasource?: { type: string } }[];
  fieldConfig?: {
    defaults: { unit?: string; thresholds?: { steps: { value: number | null; color: string }[] } };
  };
}

describe("Grafana provisioning", () => {
  it("committed dashboards and alert rules equal the generator's output (run `npm run dashboards`)", async () => {
    const files = generatedFiles();
    expect(files.length).toBe(DATASOURCE_KINDS.length * (DASHBOARDS.length + 1));
    for (const f of files) {
      const committed = await readFile(join(grafanaDir, f.path), "utf8").catch(() => "(missing)");
      expect(committed === f.content, `infra/grafana/${f.path} is stale`).toBe(true);
    }
  });

  it("generation is deterministic", () => {
    expect(generatedFiles()).toEqual(generatedFiles());
  });

  it("every provisioning file parses, and each store variant has a datasource, a dashboards provider and alert rules", async () => {
    for (const kind of DATASOURCE_KINDS) {
      const dir = join(grafanaDir, "provisioning", DATASOURCES[kind].folder);
      const files = await yamlFiles(dir);
      const docs = await Promise.all(
        files.map(async (f) => ({ f, doc: parse(await readFile(f, "utf8")) as Record<string, unknown> })),
      );
      for (const { f, doc } of docs) expect(doc.apiVersion, f).toBe(1);

      const datasources = docs.flatMap(
        ({ doc }) => (doc.datasources as { uid: string; type: string }[] | undefined) ?? [],
      );
      expect(datasources.map((d) => [d.uid, d.type])).toEqual([
        [DATASOURCES[kind].uid, DATASOURCES[kind].type],
      ]);

      const providers = docs.flatMap(
        ({ doc }) => (doc.providers as { options: { path: string } }[] | undefined) ?? [],
      );
      expect(providers.map((p) => p.options.path)).toEqual(["/var/lib/grafana/dashboards"]);

      const groups = docs.flatMap(
        ({ doc }) => (doc.groups as { rules: { data: { datasourceUid: string }[] }[] }[] | undefined) ?? [],
      );
      const rules = groups.flatMap((g) => g.rules);
      expect(rules.length).toBe(ALERTS.length);
      for (const r of rules) {
        expect(r.data.map((d) => d.datasourceUid)).toEqual([DATASOURCES[kind].uid, "__expr__"]);
      }
    }
  });

  it("the InfluxDB datasource reads its token from the token volume, not from the file", async () => {
    const doc = parse(
      await readFile(join(grafanaDir, "provisioning/influxdb/datasources/datasources.yaml"), "utf8"),
    ) as {
      datasources: { jsonData: { version: string }; secureJsonData: { token: string } }[];
    };
    expect(doc.datasources[0]?.jsonData.version).toBe("Flux");
    expect(doc.datasources[0]?.secureJsonData.token).toBe("$__file{/run/est-tokens/grafana.token}");
  });

  it("each dashboard variant queries only its own datasource kind, in its language", () => {
    for (const kind of DATASOURCE_KINDS) {
      for (const { def } of DASHBOARDS) {
        const d = renderDashboard(def, kind) as unknown as { panels: Panel[]; uid: string };
        const targets = d.panels.flatMap((p) => p.targets ?? []);
        expect(targets.length).toBeGreaterThan(0);
        for (const t of targets) {
          if (kind === "influxdb") {
            expect(t.query).toMatch(/(^|\n|= )from\(bucket: "telemetry"\)/);
            expect(t.expr).toBeUndefined();
          } else {
            expect(t.expr).toBeTruthy();
            expect(t.query).toBeUndefined();
          }
          expect(t.datasource?.type).toBe(DATASOURCES[kind].type);
        }
      }
    }
    const uids = DATASOURCE_KINDS.flatMap((k) => DASHBOARDS.map(({ def }) => renderDashboard(def, k).uid));
    expect(new Set(uids).size).toBe(uids.length);
  });

  it("telemetry panels carry each channel's unit and colour its safe range", () => {
    const d = renderDashboard(telemetryDashboard, "influxdb") as unknown as { panels: Panel[] };
    for (const name of CHANNEL_NAMES) {
      const spec = CHANNELS[name];
      const panel = d.panels.find((p) => p.type === "timeseries" && p.title === spec.label);
      expect(panel, name).toBeDefined();
      if (spec.grafanaUnit !== "none") expect(panel?.fieldConfig?.defaults.unit).toBe(spec.grafanaUnit);
      else expect(panel?.fieldConfig?.defaults.unit).toBe(`suffix: ${spec.unit}`);
      const steps = panel?.fieldConfig?.defaults.thresholds?.steps ?? [];
      const red = steps.filter((s) => s.color === "red").map((s) => s.value);
      if (spec.safeMax !== undefined) expect(red).toContain(spec.safeMax);
      if (spec.safeMin !== undefined) {
        expect(steps[0]).toEqual({ value: null, color: "red" });
        expect(steps).toContainEqual({ value: spec.safeMin, color: "green" });
      }
    }
    const voltage = d.panels.find((p) => p.title === CHANNELS.voltage_v.label);
    expect(voltage?.fieldConfig?.defaults.thresholds?.steps).toContainEqual({
      value: ALERT_LIMITS.cellVoltageMaxV * ALERT_LIMITS.cellsPerStack,
      color: "red",
    });
  });
});
