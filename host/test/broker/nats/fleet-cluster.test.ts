/**
 * 300 emulated boards, encrypted, against the three-node NATS cluster with the real ingest (the CLI, over
 * MQTT 3.1.1) and VictoriaMetrics: every reading is in the store exactly once, per (device, seq) of a boot.
 * The boards are split over the three nodes (100 each); the ingest reads from a fourth vantage, node n3.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, issueDevices, type PkiPaths } from "../../../../pki/src/index";
import { startNatsCluster, type NatsClusterHandle } from "../../../src/broker/nats/cluster";
import { pkiClientCertificates } from "../../../src/broker/nats/pki-clients";
import { mqttClientsOn as connzClients } from "../../../src/broker/nats/connz";
import { loadOrCreatePayloadMaster } from "../../../src/crypto/device-keys";
import { deviceIds, runEmulator, type EmulatorSummary } from "../../../src/emulator/run";
import { spawnIngestCli, type IngestProcess } from "../../../testkit/ingest/spawn-ingest";
import { startVictoriaMetrics, type VictoriaMetricsHandle } from "../../../src/store/victoria-metrics";
import {
  countAll,
  diffStored,
  readDeadLetters,
  storedSeqs,
  waitForStoredCount,
  waitUntil,
} from "../../ingest/helpers/stack";

const PER_NODE = 100;

/**
 * The fault cases (a node SIGKILLed, a rolling restart, boards failing over) used to lose PUBACKed readings about
 * one run in three: the ingest refused NATS's late re-deliveries as timestamp_backwards (see classify.ts and the
 * README's cluster section). On a loss they print the dead letters and the consumers' state.
 */
const PREFIXES = ["na-", "nb-", "nc-"] as const;
/** The failover case's boards: each given all three nodes, home spread round robin (30 per node). */
const FAILOVER_PREFIX = "nf-";
const FAILOVER_BOARDS = 90;

let stateDir: string;
let pki: PkiPaths;
let cluster: NatsClusterHandle;
let vm: VictoriaMetricsHandle;
let ingest: IngestProcess | undefined;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "est-nats-fleet-"));
  pki = await ensureDevPki({
    stateDir,
    devices: [
      ...PREFIXES.flatMap((p) => deviceIds(PER_NODE, p)),
      ...deviceIds(FAILOVER_BOARDS, FAILOVER_PREFIX),
    ],
    services: ["ingest", "monitor"],
    deviceKeyType: "p256",
  });
  await loadOrCreatePayloadMaster(stateDir, 1);
  cluster = await startNatsCluster({
    pki,
    clients: () => pkiClientCertificates(pki),
    dataDir: join(stateDir, "nats"),
  });
  vm = await startVictoriaMetrics({ dataDir: join(stateDir, "vm") });
}, 300_000);

afterAll(async () => {
  await ingest?.stop("SIGTERM");
  await cluster?.stop();
  await vm?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

async function startIngest(node: number): Promise<IngestProcess> {
  return spawnIngestCli({
    stateDir,
    args: [
      "--broker",
      cluster.urls[node]!,
      "--store-url",
      vm.url,
      "--encrypted",
      "--mqtt-version",
      "4",
      "--metrics-port",
      "0",
      "--account-interval",
      "0",
      "--progress-interval",
      "0",
    ],
  });
}

/** Three fleets of 100, one per node, each with its own boot, run at once. */
function runFleets(o: {
  boot: number;
  durationS: number;
  during?: () => Promise<void>;
}): Promise<EmulatorSummary[]> {
  const runs = PREFIXES.map((idPrefix, i) =>
    runEmulator({
      count: PER_NODE,
      idPrefix,
      rateHz: 1,
      durationS: o.durationS,
      brokerUrl: cluster.urls[i]!,
      stateDir,
      encrypt: true,
      deviceKeyType: "p256",
      seed: 18 + i,
      boot: o.boot,
      connectRate: 100,
      // The store is the judge here; three verifiers on one certificate would only disturb each other.
      verify: false,
      drainTimeoutS: 60,
    }),
  );
  return Promise.all([...runs, o.during?.()]).then((all) => all.slice(0, runs.length) as EmulatorSummary[]);
}

function published(summaries: readonly EmulatorSummary[]): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const s of summaries)
    for (const d of s.devices)
      m.set(
        d.id,
        Array.from({ length: d.published }, (_, k) => k),
      );
  return m;
}

/** MQTT clients on one node whose client id starts with `prefix` (the node's own monitoring view). */
async function mqttClientsOn(node: number, prefix: string): Promise<number> {
  const n = cluster.nodes[node]!;
  return n.pid === -1 ? 0 : connzClients(n.ports.http, prefix);
}

/**
 * Everything published is in the store exactly once; on a failure the ingest's dead letters and the
 * message stream's consumers say where a reading stopped.
 */
async function expectAllStored(expected: Map<string, number[]>): Promise<void> {
  // Judged on these boards only: late points of an earlier case's boards must not end the wait early.
  const ours = async (): Promise<Map<string, number[]>> =>
    new Map([...(await storedSeqs(vm.url))].filter(([id]) => expected.has(id)));
  let diff = diffStored(expected, await ours());
  const deadline = Date.now() + 120_000;
  while (diff.missing.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1000));
    diff = diffStored(expected, await ours());
  }
  const dead = (await readDeadLetters(join(stateDir, "ingest", "dead-letter.jsonl"))).filter((d) =>
    expected.has(d.sensor_id),
  );
  const reasons: Record<string, number> = {};
  for (const d of dead) reasons[d.reason] = (reasons[d.reason] ?? 0) + 1;
  if (diff.missing.length > 0) {
    console.log(`dead letters: ${JSON.stringify(reasons)} first: ${dead[0]?.detail ?? "-"}`);
    for (const n of cluster.nodes) {
      if (n.pid === -1) continue;
      const jsz = await fetch(`http://127.0.0.1:${n.ports.http}/jsz?accounts=true&consumers=true`).then((r) =>
        r.text(),
      );
      console.log(`${n.name} /jsz: ${jsz.slice(0, 3000)}`);
    }
  }
  // Dead letters explain a loss; without one they are copies of stored readings (an older boot's re-delivery
  // is refused as replay: the window keeps one boot per device).
  expect({ ...diff, deadLettered: diff.missing.length > 0 ? reasons : {} }).toEqual({
    missing: [],
    extra: [],
    deadLettered: {},
  });
}

async function clearStore(): Promise<void> {
  await fetch(`${vm.url}/api/v1/admin/tsdb/delete_series?match[]={__name__=~"electrolyser_.*"}`, {
    method: "POST",
  });
}

describe("300 boards on the three-node cluster, encrypted", () => {
  it("the launcher made the MQTT message stream with limits retention (the fix for the restart losses)", async () => {
    expect(cluster.messageStream).toEqual({ kind: "created", retention: "limits", createdDurables: [] });
    const jsz = (await (
      await fetch(`http://127.0.0.1:${cluster.nodes[0]!.ports.http}/jsz?streams=true&config=true`)
    ).json()) as {
      account_details?: {
        stream_detail?: { name: string; config?: { retention?: string; num_replicas?: number } }[];
      }[];
    };
    const stream = jsz.account_details?.[0]?.stream_detail?.find((s) => s.name === "$MQTT_msgs");
    expect(stream?.config).toMatchObject({ retention: "limits", num_replicas: 3 });
  });

  it("every reading is stored exactly once", async () => {
    ingest = await startIngest(2);
    const summaries = await runFleets({ boot: 1, durationS: 12 });
    for (const s of summaries) {
      expect(s.connect.connected).toBe(PER_NODE);
      expect(s.messages.unacked).toBe(0);
    }
    const expected = published(summaries);
    const total = countAll(expected);
    expect(total).toBeGreaterThanOrEqual(3 * PER_NODE * 10);
    const stored = await waitForStoredCount(vm.url, total, 90_000);
    expect(diffStored(expected, stored)).toEqual({ missing: [], extra: [] });
  }, 300_000);

  it("a node killed with SIGKILL mid-run, with the ingest and 100 boards on it, then restarted: nothing lost", async () => {
    // A fresh count: the first test's points for the same devices stay in the store otherwise.
    await fetch(`${vm.url}/api/v1/admin/tsdb/delete_series?match[]={__name__=~"electrolyser_.*"}`, {
      method: "POST",
    });
    await ingest?.stop("SIGTERM");
    ingest = await startIngest(0);
    const victim = cluster.nodes[0]!;
    const summaries = await runFleets({
      boot: 2,
      durationS: 20,
      during: async () => {
        // Timed from the boards' connections, not from the start (PKI and identities take a while when loaded).
        await waitUntil(async () => (await mqttClientsOn(0, PREFIXES[0])) >= PER_NODE, 60_000, "n1's boards");
        await new Promise((r) => setTimeout(r, 4000));
        const pid = victim.pid;
        victim.kill("SIGKILL");
        expect(await victim.exited()).toBeNull();
        expect(victim.pid).toBe(-1);
        await new Promise((r) => setTimeout(r, 3000));
        await victim.start();
        expect(victim.pid).not.toBe(pid);
      },
    });
    for (const s of summaries) {
      expect(s.connect.connected).toBe(PER_NODE);
      expect(s.messages.unacked).toBe(0);
    }
    // The boards of n1 lost their broker and came back to it (how many the emulator counts depends on timing).
    expect(summaries[0]!.connect.reconnects).toBeGreaterThan(0);
    await expectAllStored(published(summaries));
  }, 300_000);

  it("a rolling restart (refresh after a new certificate) while the boards publish: nothing lost", async () => {
    await fetch(`${vm.url}/api/v1/admin/tsdb/delete_series?match[]={__name__=~"electrolyser_.*"}`, {
      method: "POST",
    });
    const summaries = await runFleets({
      boot: 3,
      durationS: 30,
      during: async () => {
        let counts: number[] = [];
        await waitUntil(
          async () => {
            counts = await Promise.all(PREFIXES.map((p, n) => mqttClientsOn(n, p)));
            return counts.every((c) => c >= PER_NODE);
          },
          60_000,
          "every board on its node",
        ).catch((err: Error) => {
          throw new Error(`${err.message} (boards per node: ${counts.join(", ")})`);
        });
        await new Promise((r) => setTimeout(r, 4000));
        await issueDevices({ stateDir, ids: ["late-0001"], keyType: "p256", ifExists: "error" });
        // A new pin is an `mqtt` change, which 2.9 cannot reload: every node restarts, one at a time.
        expect((await cluster.refresh()).restarted).toEqual(["n1", "n2", "n3"]);
      },
    });
    for (const s of summaries) expect(s.messages.unacked).toBe(0);
    await expectAllStored(published(summaries));
  }, 300_000);

  it("boards given all three nodes fail over when theirs is killed: on the others within 10 s, nothing lost", async () => {
    await clearStore();
    await ingest?.stop("SIGTERM");
    // The ingest takes one URL: it reads from a node that stays up.
    ingest = await startIngest(2);
    const victim = cluster.nodes[0]!;
    let failoverMs = -1;
    const [summary] = await Promise.all([
      runEmulator({
        count: FAILOVER_BOARDS,
        idPrefix: FAILOVER_PREFIX,
        rateHz: 1,
        durationS: 25,
        brokerUrl: cluster.urls.join(","),
        stateDir,
        encrypt: true,
        deviceKeyType: "p256",
        seed: 181,
        boot: 4,
        connectRate: 100,
        verify: false,
        drainTimeoutS: 60,
      }),
      (async () => {
        // Every board on its home node first: a third of them on the victim.
        await waitUntil(
          async () => (await mqttClientsOn(0, FAILOVER_PREFIX)) >= FAILOVER_BOARDS / 3,
          30_000,
          "30 boards on n1",
        );
        await new Promise((r) => setTimeout(r, 3000));
        victim.kill("SIGKILL");
        const killedAt = Date.now();
        expect(await victim.exited()).toBeNull();
        await waitUntil(
          async () =>
            (await mqttClientsOn(1, FAILOVER_PREFIX)) + (await mqttClientsOn(2, FAILOVER_PREFIX)) ===
            FAILOVER_BOARDS,
          30_000,
          "every board on n2 or n3",
        );
        failoverMs = Date.now() - killedAt;
        await victim.start();
      })(),
    ]);
    expect(failoverMs).toBeGreaterThan(0);
    expect(failoverMs).toBeLessThan(10_000);
    expect(summary!.connect.connected).toBe(FAILOVER_BOARDS);
    expect(summary!.messages.unacked).toBe(0);
    await expectAllStored(published([summary!]));
    console.log(
      `failover: every board of the killed node on another node ${failoverMs} ms after the SIGKILL`,
    );
  }, 300_000);
});
