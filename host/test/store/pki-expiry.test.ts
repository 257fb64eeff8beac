/**
 * Expiry metrics: the exporter writes every certificate in use and both CRLs to a real VictoriaMetrics, and
 * the generated alert rule's PromQL (est-pki-expiry) returns exactly what expires within 30 days.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ensureDevPki, issueDevices, revokeDevice, rotateDevice } from "../../../pki/src/index";
import { alertDefinitions } from "../../../infra/grafana/src/definitions/alerts";
import { queryText } from "../../../infra/grafana/src/queries";
import { startVictoriaMetrics, type VictoriaMetricsHandle } from "../../src/store/victoria-metrics";
import { writePkiExpiry } from "../../src/store/pki-expiry";

const DAY = 86_400_000;
let dir: string;
let vm: VictoriaMetricsHandle;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-pki-expiry-"));
  await ensureDevPki({
    stateDir: dir,
    devices: ["ex-long", "ex-gone", "ex-rot"],
    services: ["ingest"],
    deviceKeyType: "p256",
  });
  // Expires in 10 days: must alert.
  await issueDevices({ stateDir: dir, ids: ["ex-soon"], keyType: "p256", days: 10 });
  // Revoked and superseded certificates are no longer in use: their expiry must not alert.
  await revokeDevice(dir, "ex-gone");
  await rotateDevice({ stateDir: dir, id: "ex-rot", keyType: "p256", days: 5 });
  vm = await startVictoriaMetrics({ dataDir: join(dir, "vm") });
});

afterAll(async () => {
  await vm?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function instant(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(
    `${vm.url}/api/v1/query?${new URLSearchParams({ query: expr, time: String(Date.now() / 1000) })}`,
  );
  const body = (await res.json()) as {
    data: { result: { metric: Record<string, string>; value: [number, string] }[] };
  };
  return body.data.result;
}

it("exports CAs, broker, services, devices and CRLs, and the alert selects what expires within 30 days", async () => {
  const written = await writePkiExpiry({ stateDir: dir, storeUrl: vm.url });
  await fetch(`${vm.url}/internal/force_flush`);
  let all: Awaited<ReturnType<typeof instant>> = [];
  for (let i = 0; i < 50 && all.length < written; i++) {
    all = await instant("last_over_time(pki_expiry_days_left[1h])");
    if (all.length < written) await new Promise((r) => setTimeout(r, 200));
  }
  const names = all.map((s) => `${s.metric.kind}:${s.metric.name}`).sort();
  expect(names).toEqual(
    [
      "broker:localhost",
      "crl:issuing",
      "crl:root",
      "device:ex-long",
      "device:ex-rot",
      "device:ex-soon",
      "issuing:issuing",
      "root:root",
      "service:ingest",
    ].sort(),
  );

  const rule = alertDefinitions.find((d) => d.uid === "est-pki-expiry");
  expect(rule).toBeDefined();
  if (!rule) return;
  const firing = (
    await instant(
      `${queryText("victoriametrics", rule.query, { mode: "fixed", seconds: rule.windowS })} < ${rule.limit}`,
    )
  )
    .map((s) => `${s.metric.kind}:${s.metric.name}`)
    .sort();
  // ex-rot's new certificate lasts 5 days; ex-soon's 10. The CRL (90 days) and the rest are far off.
  expect(firing).toEqual(["device:ex-rot", "device:ex-soon"]);
  const soon = all.find((s) => s.metric.name === "ex-soon");
  expect(Number(soon?.value[1])).toBeGreaterThan(9.9);
  expect(Number(soon?.value[1]) * DAY).toBeLessThan(10 * DAY + 1);
});
