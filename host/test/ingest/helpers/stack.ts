// The ingest's end-to-end test helpers over the real stack (../../../testkit/ingest/real-stack.ts, shared with
// `npm run bench -- chaos`): a fleet, the ingest in this process, what the store holds.
import { readFile } from "node:fs/promises";
import { DeviceKeyCache } from "../../../src/crypto/device-keys";
import { nodeAead } from "../../../src/crypto/node-aead";
import { MessageClassifier } from "../../../src/ingest/classify";
import type { DeviceRateLimiter } from "../../../src/ingest/rate-limit";
import { deadLetterFile, type DeadLetter } from "../../../src/ingest/dead-letter";
import { IngestService, type IngestServiceOptions } from "../../../src/ingest/service";
import { influxStore } from "../../../src/ingest/store-writer";
import { TestFleet } from "../../../testkit/ingest/fleet-publisher";
import { exportSeries } from "../../../src/store/victoria-metrics";
import { KEY_ID, type TestStack } from "../../../testkit/ingest/real-stack";
export {
  KEY_ID,
  boardIds,
  spawnIngest,
  startTestStack,
  storedReadings,
  type SpawnedIngest,
  type TestStack,
} from "../../../testkit/ingest/real-stack";
import type { SpawnedIngest } from "../../../testkit/ingest/real-stack";

/**
 * Stops what a test started, in the order that loses nothing: the ingest first (it acknowledges what the
 * store accepted and lets go of its session), then the boards, then the broker and the store.
 */
export async function stopStack(parts: {
  ingest?: IngestService | undefined;
  fleet?: TestFleet | undefined;
  stack?: TestStack | undefined;
}): Promise<void> {
  await parts.ingest?.stop(2000);
  await parts.fleet?.end();
  await parts.stack?.cleanup();
}

export async function connectFleet(
  s: TestStack,
  o: { encrypted: boolean; ids?: string[]; boot?: number },
): Promise<TestFleet> {
  return TestFleet.connect({
    brokerUrl: s.broker.url,
    ids: o.ids ?? s.ids,
    boot: o.boot,
    credentials: { ca: s.pki.caBundle, device: (id) => s.pki.device(id) },
    encryption: o.encrypted ? { keyId: KEY_ID, master: s.master } : undefined,
  });
}

/** The ingest in this process (for tests that read its account directly). */
export async function startIngest(
  s: TestStack,
  o: { encrypted: boolean; sites?: Map<string, string>; rateLimit?: DeviceRateLimiter } & Partial<
    Omit<IngestServiceOptions, "classifier">
  >,
): Promise<IngestService> {
  const keys = new DeviceKeyCache(new Map([[KEY_ID, s.master]]));
  const service = new IngestService({
    brokerUrl: s.broker.url,
    tls: {
      ca: await readFile(s.pki.caBundle, "utf8"),
      cert: await readFile(s.pki.service("ingest").cert, "utf8"),
      key: await readFile(s.pki.service("ingest").key, "utf8"),
    },
    clientId: "ingest-test",
    group: "ingest",
    classifier: new MessageClassifier({
      mode: o.encrypted
        ? { kind: "encrypted", aead: nodeAead, keyFor: (k, id) => keys.keyFor(k, id) }
        : { kind: "plain" },
      siteOf: (id) => o.sites?.get(id),
      ...(o.rateLimit ? { rateLimit: o.rateLimit } : {}),
    }),
    store: influxStore({ url: s.vm.url, org: "electrolyser", bucket: "telemetry" }),
    deadLetters: deadLetterFile(s.deadLetterPath),
    accountIntervalMs: 0,
    log: () => undefined,
    ...o,
  });
  await service.start();
  return service;
}

export function stopSpawned(p: SpawnedIngest, signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
  return p.stop(signal);
}

/** Every stored (sensor_id → seq list) of telemetry, read back from the store. */
export async function storedSeqs(vmUrl: string): Promise<Map<string, number[]>> {
  const series = await exportSeries(vmUrl, "electrolyser_seq", { startMs: Date.now() - 86_400_000 });
  const out = new Map<string, number[]>();
  for (const s of series) {
    const id = s.metric.sensor_id ?? "?";
    out.set(
      id,
      [...(out.get(id) ?? []), ...s.values].sort((a, b) => a - b),
    );
  }
  return out;
}

export function countAll(m: Map<string, number[]>): number {
  let n = 0;
  for (const v of m.values()) n += v.length;
  return n;
}

/** Waits until the store holds at least `expected` telemetry samples (new series show up after ~10 s in VM 1.79). */
export async function waitForStoredCount(
  vmUrl: string,
  expected: number,
  timeoutMs = 60_000,
): Promise<Map<string, number[]>> {
  const deadline = Date.now() + timeoutMs;
  let last = await storedSeqs(vmUrl);
  while (countAll(last) < expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    last = await storedSeqs(vmUrl);
  }
  return last;
}

export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function readDeadLetters(path: string): Promise<DeadLetter[]> {
  try {
    return (await readFile(path, "utf8"))
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as DeadLetter);
  } catch {
    return [];
  }
}

/**
 * Compares what was published with what is stored, as multisets of (device, seq): a reading
 * missing, stored twice, or stored without having been published is reported.
 */
export function diffStored(
  published: Map<string, number[]>,
  stored: Map<string, number[]>,
): { missing: string[]; extra: string[] } {
  const missing: string[] = [];
  const extra: string[] = [];
  for (const [id, seqs] of published) {
    const counts = new Map<number, number>();
    for (const s of stored.get(id) ?? []) counts.set(s, (counts.get(s) ?? 0) + 1);
    for (const s of seqs) {
      const c = counts.get(s) ?? 0;
      if (c === 0) missing.push(`${id}#${s}`);
      else counts.set(s, c - 1);
    }
    for (const [s, c] of counts) if (c > 0) extra.push(`${id}#${s}x${c}`);
  }
  for (const id of stored.keys()) if (!published.has(id)) extra.push(`${id}:*`);
  return { missing, extra };
}
