// `npm run test:unit` must stay free of external services: every file it lists is checked here against the
// import graph, so a unit test that starts (or imports a helper that starts) Mosquitto, VictoriaMetrics,
// nats-server, faketime, socat or chromium fails this test instead of slowing or breaking the quick run.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { UNIT_TESTS } from "../../../vitest.unit.config";
import { ImportGraph, ROOT } from "./import-graph";

const graph = new ImportGraph();

const STARTS_PROCESS = /\b(spawn|spawnSync|execFile|execFileSync|execSync|fork)\s*\(/;
const SERVICE = /\b(mosquitto|victoria-metrics|nats-server|faketime|socat|chromium)\b/i;

/** A file that starts a child process and names a service binary: a launcher, or a test that launches one. */
const launchers = new Set(
  graph.files.filter((f) => STARTS_PROCESS.test(graph.text(f)) && SERVICE.test(graph.text(f))),
);

describe("npm run test:unit", () => {
  it("recognises the service launchers (so an empty result below means something)", () => {
    for (const f of [
      "host/src/broker/mosquitto.ts",
      "host/src/broker/nats/cluster.ts",
      "host/src/store/victoria-metrics.ts",
      "host/testkit/esp32-rom-double/virtual-board.ts",
      "host/test/broker/helpers/broker-cli.ts",
    ])
      expect(launchers, f).toContain(f);
    expect(graph.closure("host/test/ingest/e2e.test.ts")).toContain("host/src/broker/mosquitto.ts");
  });

  it("lists only files that exist, each once", () => {
    expect(UNIT_TESTS.filter((f) => !existsSync(join(ROOT, f)))).toEqual([]);
    expect(new Set(UNIT_TESTS).size).toBe(UNIT_TESTS.length);
  });

  it("lists no test that reaches a service launcher through its imports", () => {
    const reached = UNIT_TESTS.flatMap((t) =>
      [...graph.closure(t)].filter((f) => launchers.has(f)).map((f) => `${t} reaches ${f}`),
    );
    expect(reached).toEqual([]);
  });
});
