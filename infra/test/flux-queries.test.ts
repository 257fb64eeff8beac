// Every Flux query of every panel, variable and alert, and the downsampling task, passes the Flux
// language server (parser + type checker, WebAssembly build) without an error or warning.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ALERTS, DASHBOARDS } from "../grafana/src/outputs";
import { allQueries } from "../grafana/src/queries";
import { checkFlux, type FluxCheck } from "./support/flux-check";
import { interpolateFlux } from "./support/interpolate";
import { repoRoot } from "../../shared/state-dir";

/**
 * The runtime-provided options (`option v` that Grafana sends, `option task` of an InfluxDB task)
 * draw a hint on their own line and nowhere else: that one is expected.
 */
function isOptionHint(d: FluxCheck["diagnostics"][number], lines: string[]): boolean {
  const line = lines[d.range?.start.line ?? -1] ?? "";
  const m = /^option (v|task) = /.exec(line);
  return d.severity === 2 && m !== null && d.message.includes(`Avoid using \`${m[1]}\``);
}

function problems(text: string, check: FluxCheck): string[] {
  const lines = text.split("\n");
  return [
    ...check.syntax,
    ...check.diagnostics
      .filter((d) => !isOptionHint(d, lines))
      .map((d) => `${d.message} (line ${(d.range?.start.line ?? -1) + 1})`),
  ];
}

describe("Flux queries", () => {
  it("the checker reports real errors (so a clean result means something)", async () => {
    const [bad, typo] = await checkFlux([
      'from(bucket: "telemetry") |> range(start: -1h',
      'from(bucket: "telemetry") |> range(strat: -1h) |> nosuchfn()',
    ]);
    expect(bad?.syntax.length).toBeGreaterThan(0);
    expect(typo?.diagnostics.map((d) => d.message).join("; ")).toMatch(/nosuchfn/);
    expect(typo?.diagnostics.map((d) => d.message).join("; ")).toMatch(/strat/);
  });

  it("every dashboard, variable and alert query is valid Flux", async () => {
    const queries = allQueries(
      "influxdb",
      DASHBOARDS.map((d) => d.def),
      ALERTS,
    );
    expect(queries.length).toBeGreaterThan(30);
    const texts = queries.map((q) => interpolateFlux(q.text));
    const checks = await checkFlux(texts);
    const failures = queries
      .map((q, i) => ({
        where: q.where,
        problems: problems(texts[i] ?? "", checks[i] ?? { syntax: ["no result"], diagnostics: [] }),
      }))
      .filter((f) => f.problems.length > 0);
    expect(failures).toEqual([]);
  });

  it("the InfluxDB downsampling task is valid Flux", async () => {
    const text = await readFile(join(repoRoot(), "infra/influxdb/tasks/downsample-telemetry.flux"), "utf8");
    const [check] = await checkFlux([text]);
    expect(check && problems(text, check)).toEqual([]);
  });
});
