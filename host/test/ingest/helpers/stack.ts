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
import { countAll, storedSeqs } from "../../../src/store/stored-seqs";
export { countAll, diffStored, storedSeqs } from "../../../src/store/stored-seqs";
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
