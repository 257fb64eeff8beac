import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxStore, StoreRejectedError } from "../../src/ingest/store-writer";
import {
  exportSeries,
  startVictoriaMetrics,
  type VictoriaMetricsHandle,
} from "../../src/store/victoria-metrics";

let dir: string;
let vm: VictoriaMetricsHandle;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-store-writer-"));
  vm = await startVictoriaMetrics({ dataDir: join(dir, "vm") });
});

afterAll(async () => {
  await vm?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function seqs(sensor: string, want: number, timeoutMs = 20_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await exportSeries(vm.url, `electrolyser_seq{sensor_id="${sensor}"}`);
    const values = s[0]?.values ?? [];
    if (values.length >= want || Date.now() > deadline) return values;
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("influxStore (InfluxDB v2 client against VictoriaMetrics' /api/v2/write)", () => {
  it("resolves once the store accepted every line of the batch", async () => {
    const store = influxStore({ url: vm.url, org: "o", bucket: "b", token: "unused-by-victoria-metrics" });
    const ts = Date.now() - 10_000;
    const lines = Array.from(
      { length: 5000 },
      (_, i) => `electrolyser,sensor_id=w1,site=s seq=${i}i ${ts + i}`,
    );
    await store.write(lines);
    expect(await seqs("w1", 5000)).toHaveLength(5000);
  });

  it("rejects while the store is down and keeps no hidden retry buffer", async () => {
    const store = influxStore({ url: vm.url, org: "o", bucket: "b", timeoutMs: 2000 });
    await vm.stop();
    const ts = Date.now() - 5000;
    await expect(store.write([`electrolyser,sensor_id=w2,site=s seq=1i ${ts}`])).rejects.toThrow();
    await vm.start();
    // Had the client queued the failed batch for a retry of its own, it would show up now.
    await new Promise((r) => setTimeout(r, 3000));
    await store.write([`electrolyser,sensor_id=w2,site=s seq=2i ${ts + 1}`]);
    expect(await seqs("w2", 1)).toEqual([2]);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await seqs("w2", 2, 0)).toEqual([2]);
  });

  it("tells lines the store will never accept (HTTP 400, as InfluxDB answers) apart from an outage or a bad token", async () => {
    // VictoriaMetrics skips a bad line and answers 204; InfluxDB 2 answers 400. A stand-in answers like InfluxDB.
    let status = 400;
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify({ code: "invalid", message: "unable to parse" }));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as AddressInfo).port;
    try {
      const store = influxStore({ url: `http://127.0.0.1:${port}`, org: "o", bucket: "b", token: "t" });
      const err = await store.write(["electrolyser,sensor_id=w3 seq=1i 1"]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreRejectedError);
      expect((err as StoreRejectedError).statusCode).toBe(400);
      status = 401;
      const auth = await store.write(["electrolyser,sensor_id=w3 seq=1i 1"]).catch((e: unknown) => e);
      expect(auth).toBeInstanceOf(Error);
      expect(auth).not.toBeInstanceOf(StoreRejectedError);
    } finally {
      server.close();
    }
  });
});
