/**
 * Ingest workers on the three-node cluster: three `npm run ingest -- --jetstream …` processes, each with its
 * own route-CA identity, share the JetStream durables on `$MQTT_msgs`; one is killed with SIGKILL while 150
 * encrypted boards publish, and the others take over: every reading is in the store exactly once, and every
 * board hears from the workers that it is (end-to-end confirmations published over NATS to the boards' MQTT
 * downlink), including the readings the killed worker wrote but never confirmed (the boards resend them).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki } from "../../../../pki/src/index";
import {
  jetstreamWorkerArgs,
  startNatsCluster,
  type NatsClusterHandle,
} from "../../../src/broker/nats/cluster";
import { pkiClientCertificates } from "../../../src/broker/nats/pki-clients";
import { loadOrCreatePayloadMaster } from "../../../src/crypto/device-keys";
import { deviceIds, runEmulator } from "../../../src/emulator/run";
import {
  scrapeMetrics,
  spawnIngestCli,
  sumMetric,
  type IngestProcess,
} from "../../../testkit/ingest/spawn-ingest";
import { startVictoriaMetrics, type VictoriaMetricsHandle } from "../../../src/store/victoria-metrics";
import { diffStored, readDeadLetters, storedSeqs, waitUntil } from "../../ingest/helpers/stack";

const BOARDS = 150;
const PREFIX = "nw-";
const WORKERS = 3;

let stateDir: string;
let cluster: NatsClusterHandle;
let vm: VictoriaMetricsHandle;
const workers: IngestProcess[] = [];

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "est-nats-workers-"));
  const pki = await ensureDevPki({
    stateDir,
    devices: deviceIds(BOARDS, PREFIX),
    services: ["ingest", "monitor"],
    deviceKeyType: "p256",
  });
  await loadOrCreatePayloadMaster(stateDir, 1);
  cluster = await startNatsCluster({
    pki,
    clients: () => pkiClientCertificates(pki),
    dataDir: join(stateDir, "nats"),
    ingestWorkers: WORKERS,
  });
  vm = await startVictoriaMetrics({ dataDir: join(stateDir, "vm") });
}, 300_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop("SIGTERM")));
  await cluster?.stop();
  await vm?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

function startWorker(n: number): Promise<IngestProcess> {
  return spawnIngestCli({
    stateDir,
    args: [
      ...jetstreamWorkerArgs(cluster, n),
      "--store-url",
      vm.url,
      "--encrypted",
      "--dead-letter",
      join(stateDir, `dead-letter-${n}.jsonl`),
      "--metrics-port",
      "0",
      "--account-interval",
      "0",
      "--progress-interval",
      "0",
      "--confirm",
      "on",
      "--durable-horizon",
      "12",
      "--confirm-interval",
      "1",
    ],
  });
}

const written = async (w: IngestProcess): Promise<number> =>
  sumMetric(await scrapeMetrics(w.metricsPort), "ingest_written_total");

describe("ingest workers on JetStream", () => {
  it("a worker identity may only pull from and acknowledge the two durables, and confirm to boards", async () => {
    const { workerPermissions } = await import("../../../src/broker/nats/message-stream");
    const p = workerPermissions();
    const js = p.publish.allow.filter((s) => s.startsWith("$JS."));
    expect(js.every((s) => /^\$JS\.(API\.INFO|API\.CONSUMER\.(INFO|MSG\.NEXT)\.|ACK\.)/.test(s))).toBe(true);
    expect(p.publish.allow.filter((s) => !s.startsWith("$JS."))).toEqual(["electrolyser.*.down.stored"]);
    expect(p.publish.allow.some((s) => s.includes("STREAM") || s.includes("CREATE"))).toBe(false);
    expect(p.subscribe.allow).toEqual(["_INBOX.>"]);
  });

  it("three workers share the load; one killed with SIGKILL under load: the others take over, nothing lost", async () => {
    for (let n = 1; n <= WORKERS; n++) workers.push(await startWorker(n));
    let writtenByVictim = -1;
    let survivorsAtKill: number[] = [];
    const [summary] = await Promise.all([
      runEmulator({
        count: BOARDS,
        idPrefix: PREFIX,
        rateHz: 1,
        durationS: 30,
        brokerUrl: cluster.urls.join(","),
        stateDir,
        encrypt: true,
        deviceKeyType: "p256",
        seed: 183,
        boot: 1,
        connectRate: 100,
        verify: false,
        confirmations: "on",
        // Above the horizon plus a round: brings back what the killed worker wrote and never confirmed.
        confirmTimeoutS: 18,
        drainTimeoutS: 90,
      }),
      (async () => {
        // Every worker is writing before one dies: the load is shared.
        await waitUntil(
          async () => (await Promise.all(workers.map(written))).every((n) => n > 100),
          60_000,
          "every worker writing",
        );
        const victim = workers[0]!;
        writtenByVictim = await written(victim);
        survivorsAtKill = await Promise.all(workers.slice(1).map(written));
        victim.child.kill("SIGKILL");
        expect(await victim.exited).toBeNull();
      })(),
    ]);
    expect(writtenByVictim).toBeGreaterThan(100);
    expect(summary!.connect.connected).toBe(BOARDS);
    expect(summary!.messages.unacked).toBe(0);
    expect(summary!.messages.awaitingConfirmation).toBe(0);
    expect(summary!.messages.confirmed).toBe(summary!.messages.readings);

    const expected = new Map(
      summary!.devices.map((d) => [d.id, Array.from({ length: d.published }, (_, k) => k)]),
    );
    const ours = async (): Promise<Map<string, number[]>> =>
      new Map([...(await storedSeqs(vm.url))].filter(([id]) => expected.has(id)));
    // What the killed worker held unacknowledged comes again to the others after AckWait (15 s).
    let diff = diffStored(expected, await ours());
    const deadline = Date.now() + 120_000;
    while (diff.missing.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      diff = diffStored(expected, await ours());
    }
    const dead = (
      await Promise.all(
        Array.from({ length: WORKERS }, (_, i) =>
          readDeadLetters(join(stateDir, `dead-letter-${i + 1}.jsonl`)),
        ),
      )
    ).flat();
    expect({ ...diff, deadLettered: dead.map((d) => `${d.reason}: ${d.detail}`).slice(0, 5) }).toEqual({
      missing: [],
      extra: [],
      deadLettered: [],
    });
    // The survivors went on with the whole load after the kill (half the run: 150 boards × ~15 s).
    const survivors = await Promise.all(workers.slice(1).map(written));
    const total = [...expected.values()].reduce((n, s) => n + s.length, 0);
    const after = survivors.map((n, i) => n - survivorsAtKill[i]!);
    expect(after.every((n) => n > 300)).toBe(true);
    expect(after[0]! + after[1]!).toBeGreaterThan(1000);
    console.log(
      `workers: ${total} readings; the killed worker wrote ${writtenByVictim} before the SIGKILL, the others ${survivors.join(" and ")}`,
    );
  }, 300_000);
});
