/**
 * One emulator run from options to summary: open-file limit, PKI, broker (embedded unless given), payload
 * keys, verifying subscriber, fleet, live view, drain, loss accounting. The CLI, the tests and the
 * benchmark all go through here.
 */
import { deviceIdSequence } from "../../../firmware/src/telemetry/vocabulary";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { availableParallelism } from "node:os";
import { ensureDevPki, provisionedBrokerPins } from "../../../pki/src/index";
import type { KeyType, PkiPaths } from "../../../pki/src/index";
import { DeviceKeyCache, loadOrCreatePayloadMaster } from "../crypto/device-keys";
import { nodeAead } from "../crypto/node-aead";
import { writeFileAtomic } from "../state/state-dir";
import { startEmbeddedBroker } from "./embedded-broker";
import type { EmbeddedBroker } from "./embedded-broker";
import { benchLine, writeLines } from "./bench-metrics";
import type { StoreTarget } from "./bench-metrics";
import { ensureFdLimit } from "./fd-limit";
import { loadScenario, randomScenario, resolveScenario } from "./faults/scenario";
import type { ResolvedFault, Scenario } from "./faults/scenario";
import { Fleet, sleep } from "./fleet";
import type { FaultLogEntry, FleetControl, FleetOptions } from "./fleet";
import { ShardedFleet } from "./shards/sharded-fleet";
import type { LiveSnapshot } from "./live-view";
import type { Histogram } from "./histogram";
import { Verifier } from "./verifier";
import { MONITOR_IDENTITY } from "../broker/topic-policy";
import type { BrokerAddress } from "../../../firmware/src/app/broker-rotation";

export interface EmulatorOptions {
  count: number;
  rateHz: number;
  /** Seconds; undefined: until `signal` aborts. */
  durationS?: number;
  /**
   * mqtts://host:port, or several comma-separated (the nodes of a cluster: the boards are spread over
   * them, each with its own home first, and fail over to the others); undefined: the embedded broker.
   */
  brokerUrl?: string;
  encrypt: boolean;
  keyId?: number;
  scenario?: Scenario;
  scenarioFile?: string;
  randomFaultsPerMin?: number;
  seed: number | string;
  connectRate: number;
  maxPendingConnects?: number;
  /** Worker threads for the boards; 1 (the default) runs them on this thread. */
  workers?: number;
  stateDir: string;
  verify: boolean;
  boot?: number;
  deviceKeyType?: KeyType;
  idPrefix?: string;
  /**
   * CN of the verifying subscriber's certificate (issued if missing); default "monitor". It must be an
   * identity the broker's ACL lets read the fleet (monitor or the ingest's). Not the ingest's when a real
   * ingest uses the broker: with the client id bound to the CN, the verifier would take over its session.
   */
  verifyIdentity?: string;
  outboxCapacity?: number;
  maxInflight?: number;
  drainTimeoutS?: number;
  keepReadings?: boolean;
  /** Write the emulator's figures to the store (measurement `bench`) every 10 s and at the end. */
  store?: StoreTarget;
  /** The `run` tag of those points; default: emulate-<boards>-<boot>. */
  runName?: string;
  signal?: AbortSignal;
  /** Progress lines for setup steps (PKI generation...). */
  onProgress?: (line: string) => void;
  /** Called about once a second with the live figures. */
  onLive?: (s: LiveSnapshot) => void;
  onFault?: (e: FaultLogEntry) => void;
  /** Test hooks: run against the fleet while it runs. */
  onStarted?: (ctx: {
    fleet: FleetControl;
    verifier: Verifier | undefined;
    brokerUrl: string;
  }) => void | Promise<void>;
}

export interface EmulatorSummary {
  ok: boolean;
  boards: number;
  /** Threads running the boards (1: the main thread). */
  workers: number;
  rateHz: number;
  durationS: number;
  broker: string;
  embeddedBroker: boolean;
  encrypt: boolean;
  seed: string;
  boot: number;
  connect: {
    allConnectedS: number | null;
    connected: number;
    latencyP50Ms: number;
    latencyP99Ms: number;
    handshakeFailures: number;
    /** Of the handshake failures, servers the boards' broker check refused (key not pinned, chain not the fleet's). */
    brokerRefused: number;
    connectFailures: number;
    reconnects: number;
  };
  messages: {
    readings: number;
    publishes: number;
    acked: number;
    resends: number;
    outboxDropped: number;
    unacked: number;
    ackedPerS: number;
  };
  pubackMs: { p50: number; p99: number; max: number };
  /** After every board connected and sent its backlog (null if that never happened). */
  pubackSteadyMs: { p50: number; p99: number } | null;
  verify: {
    received: number;
    unique: number;
    duplicates: number;
    lost: number;
    otherBoot: number;
    rejected: number;
    e2eMs: { p50: number; p99: number; max: number };
    e2eSteadyMs: { p50: number; p99: number } | null;
    lostExamples: { device: string; missing: number }[];
  } | null;
  /** Process CPU: with the embedded broker or the verifier running here, their work is included (see `includes`). */
  cpu: { userS: number; systemS: number; usPerMessage: number; window: string; includes: string[] };
  memory: { rssMiB: number; heapUsedMiB: number; bytesPerBoard: number };
  faults: { injected: number; log: FaultLogEntry[] };
  devices: { id: string; boot: number; published: number; dropped: number }[];
}

/**
 * Below ~1,000 boards one thread keeps up with handshakes and 1 Hz telemetry; above, the TLS handshakes of a
 * connect burst alone fill a core, so the boards are spread over one worker per core.
 */
export function defaultWorkers(count: number): number {
  return count >= 1000 ? Math.min(availableParallelism(), 8) : 1;
}

export function deviceIds(count: number, prefix = "emu-"): string[] {
  return deviceIdSequence(prefix, count, Math.max(5, String(count).length));
}

/** A boot number that grows with every run from this state folder, so (device, boot, seq) and envelope nonces never repeat. */
export async function nextBoot(stateDir: string): Promise<number> {
  const path = join(stateDir, "emulator", "boot-counter");
  let last = 0;
  try {
    last = Number.parseInt(await readFile(path, "utf8"), 10) || 0;
  } catch {
    // first run
  }
  const boot = Math.max(last + 1, 1);
  await writeFileAtomic(path, `${boot}\n`);
  return boot;
}

function parseBrokerUrls(list: string): BrokerAddress[] {
  const brokers = list
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u.length > 0)
    .map(parseBrokerUrl);
  if (brokers.length === 0) throw new Error("--broker: no broker URL given");
  const seen = new Set(brokers.map((b) => `${b.host}:${b.port}`));
  if (seen.size !== brokers.length) throw new Error(`--broker ${list}: a broker is listed twice`);
  return brokers;
}

function parseBrokerUrl(url: string): { host: string; port: number } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--broker ${url}: not a URL (expected mqtts://host:8883)`);
  }
  if (u.protocol !== "mqtts:")
    throw new Error(`--broker ${url}: only mqtts:// (MQTT over mutual TLS) is supported`);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port ? Number(u.port) : 8883 };
}

const round = (x: number, d = 2): number => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : 0);

/** p50/p99/max of a whole run, in ms, as the summary reports them. */
function latencySummary(h: Histogram): { p50: number; p99: number; max: number } {
  return { p50: round(h.percentileMs(0.5)), p99: round(h.percentileMs(0.99)), max: round(h.maxUs / 1000) };
}

/** p50/p99 after every board connected, or null when nothing was measured then. */
function steadySummary(h: Histogram): { p50: number; p99: number } | null {
  return h.count ? { p50: round(h.percentileMs(0.5)), p99: round(h.percentileMs(0.99)) } : null;
}

export async function runEmulator(o: EmulatorOptions): Promise<EmulatorSummary> {
  const log = o.onProgress ?? ((): void => undefined);
  const ids = deviceIds(o.count, o.idPrefix);
  const verifyIdentity = o.verifyIdentity ?? MONITOR_IDENTITY;

  const external = o.brokerUrl ? parseBrokerUrls(o.brokerUrl) : undefined;
  // Each board is one socket; the embedded broker holds the other end in this same process.
  ensureFdLimit(o.count * (o.brokerUrl ? 1 : 2) + 200);

  log(
    `PKI: ensuring CA, broker, ${verifyIdentity} and ${o.count} device certificates in ${join(o.stateDir, "pki")}`,
  );
  let lastPct = -1;
  const pki: PkiPaths = await ensureDevPki({
    stateDir: o.stateDir,
    devices: ids,
    services: [verifyIdentity],
    deviceKeyType: o.deviceKeyType ?? "rsa-2048",
    onProgress: (done, total) => {
      const pct = Math.floor((100 * done) / total);
      if (pct !== lastPct && (pct % 10 === 0 || done === total)) {
        lastPct = pct;
        log(`PKI: generated ${done}/${total} device keys`);
      }
    },
  });

  let embedded: EmbeddedBroker | undefined;
  let target: { host: string; port: number };
  if (external) target = external[0]!;
  else {
    embedded = await startEmbeddedBroker({
      caBundle: pki.caBundle,
      crl: pki.crl,
      cert: pki.broker.cert,
      key: pki.broker.key,
    });
    target = { host: embedded.host, port: embedded.port };
    log(`embedded broker (Aedes, mutual TLS, fleet topic policy) listening on ${embedded.url}`);
  }
  const urlOf = (b: BrokerAddress): string =>
    `mqtts://${b.host.includes(":") ? `[${b.host}]` : b.host}:${b.port}`;
  const brokerUrl = (external ?? [target]).map(urlOf).join(",");

  const keyId = o.keyId ?? 1;
  const master = o.encrypt ? await loadOrCreatePayloadMaster(o.stateDir, keyId) : undefined;
  const boot = o.boot ?? (await nextBoot(o.stateDir));

  const scenario: Scenario = { faults: [] };
  if (o.scenario) scenario.faults.push(...o.scenario.faults);
  if (o.scenarioFile) scenario.faults.push(...(await loadScenario(o.scenarioFile)).faults);
  if (o.randomFaultsPerMin)
    scenario.faults.push(...randomScenario(o.seed, o.randomFaultsPerMin, o.durationS ?? 24 * 3600).faults);
  const faults: ResolvedFault[] = resolveScenario(scenario, ids, o.seed);

  const fleetOptions: FleetOptions = {
    deviceIds: ids,
    rateHz: o.rateHz,
    seed: o.seed,
    host: target.host,
    port: target.port,
    ...(external && external.length > 1 ? { failover: external.slice(1) } : {}),
    // Like the firmware (provisioned with the root certificate only): the broker sends its issuing CA along.
    caFile: pki.root,
    brokerPins: await provisionedBrokerPins(o.stateDir),
    device: (id) => pki.device(id),
    boot,
    ...(master ? { encryption: { keyId, master } } : {}),
    faults,
    connectRate: o.connectRate,
    ...(o.maxPendingConnects ? { maxPendingConnects: o.maxPendingConnects } : {}),
    ...(o.outboxCapacity ? { outboxCapacity: o.outboxCapacity } : {}),
    ...(o.maxInflight ? { maxInflight: o.maxInflight } : {}),
    ...(o.onFault ? { onFault: o.onFault } : {}),
  };
  const workers = Math.min(o.workers ?? 1, o.count);
  const fleet: FleetControl =
    workers > 1 ? new ShardedFleet({ ...fleetOptions, workers }) : new Fleet(fleetOptions);

  let verifier: Verifier | undefined;
  const cleanup = async (): Promise<void> => {
    await fleet.shutdown().catch(() => undefined);
    verifier?.stop();
    await embedded?.stop().catch(() => undefined);
  };

  try {
    if (o.verify) {
      const keys = master ? new DeviceKeyCache(new Map([[keyId, master]])) : undefined;
      verifier = new Verifier({
        host: target.host,
        port: target.port,
        caFile: pki.caBundle,
        certFile: pki.service(verifyIdentity).cert,
        keyFile: pki.service(verifyIdentity).key,
        // Mosquitto replaces it with the CN (use_username_as_clientid); it names the session elsewhere.
        clientId: `${verifyIdentity}-emulator-verify-${process.pid}-${boot}`,
        expectedBoot: boot,
        decode: keys
          ? { kind: "encrypted", aead: nodeAead, keyFor: (k, id) => keys.keyFor(k, id) }
          : { kind: "plain" },
        clockUntrusted: (id) => fleet.clockUntrusted(id),
        keepReadings: o.keepReadings ?? false,
      });
      await verifier.start();
      verifier.onReconnecting = (err) =>
        log(`verifier: ${err.message}; reconnecting (its persistent session keeps what arrives meanwhile)`);
    }

    // Memory per board counts everything a board brings: its TLS context, socket, outbox and physics.
    const rssBefore = process.memoryUsage().rss;
    let lastIdentityLog = 0;
    await fleet.init((done, total) => {
      if (done === total || performance.now() - lastIdentityLog > 2000) {
        lastIdentityLog = performance.now();
        log(`loading board identities ${done}/${total}`);
      }
    });
    const cpuStart = process.cpuUsage();
    fleet.start();
    log(
      `${o.count} boards sampling at ${o.rateHz} Hz, connecting at up to ${o.connectRate}/s to ${brokerUrl}` +
        (o.durationS === undefined ? " — Ctrl-C to stop" : ` for ${o.durationS} s`),
    );
    await o.onStarted?.({ fleet, verifier, brokerUrl });

    // Steady-state CPU: from all boards connected (handshakes are a separate cost) to the end of sampling.
    let steady: { cpu: NodeJS.CpuUsage; acked: number } | undefined;
    let lastAcked = 0;
    let lastTick = performance.now();
    const recentFaults: string[] = [];
    const faultListener = (e: FaultLogEntry): void => {
      if (e.event !== "start") return;
      recentFaults.push(`${e.type}@${e.device}`);
      if (recentFaults.length > 3) recentFaults.shift();
    };
    const endAt =
      o.durationS === undefined ? Number.POSITIVE_INFINITY : performance.now() + o.durationS * 1000;
    let aborted = false;
    const onAbort = (): void => {
      aborted = true;
    };
    o.signal?.addEventListener("abort", onAbort, { once: true });
    let seenFaults = 0;
    let lastStoreWrite = performance.now();
    const runName = o.runName ?? `emulate-${o.count}-${boot}`;
    let storeFailed = false;
    const pendingWrites: Promise<void>[] = [];
    const storeWrite = (fields: Record<string, number>): void => {
      if (!o.store) return;
      const p = writeLines(o.store, [benchLine(runName, fields, Date.now())]).catch((err: unknown) => {
        if (!storeFailed)
          log(
            `bench metrics: ${err instanceof Error ? err.message : String(err)} (carrying on without them)`,
          );
        storeFailed = true;
      });
      pendingWrites.push(p);
    };
    while (!aborted && !o.signal?.aborted && performance.now() < endAt) {
      await sleep(Math.min(250, Math.max(1, endAt - performance.now())));
      if (fleet.failure) throw fleet.failure;
      for (; seenFaults < fleet.faultLog.length; seenFaults++) faultListener(fleet.faultLog[seenFaults]!);
      if (!steady && fleet.allConnectedAtS !== undefined && fleet.pendingMessages() <= o.count * 2) {
        steady = { cpu: process.cpuUsage(), acked: fleet.stats.acked };
        fleet.markSteady();
        if (verifier) verifier.steady = true;
      }
      const now = performance.now();
      if (now - lastTick >= 1000) {
        const s = fleet.stats;
        o.onLive?.({
          elapsedS: fleet.elapsedS(),
          target: o.count,
          connected: s.connected,
          connectFailures: s.handshakeFailures + s.connectFailures,
          msgPerS: ((s.acked - lastAcked) * 1000) / (now - lastTick),
          pubackP50Ms: s.pubackWindow.percentileMs(0.5),
          pubackP99Ms: s.pubackWindow.percentileMs(0.99),
          ...(verifier
            ? {
                e2eP50Ms: verifier.e2eWindow.percentileMs(0.5),
                e2eP99Ms: verifier.e2eWindow.percentileMs(0.99),
                inTransit: Math.max(0, s.acked - verifier.unique),
                duplicates: verifier.duplicates,
              }
            : {}),
          queued: fleet.pendingMessages(),
          faultsInjected: s.faultsInjected,
          lastFaults: [...recentFaults],
        });
        if (o.store && now - lastStoreWrite >= 10_000) {
          lastStoreWrite = now;
          storeWrite({
            boards_target: o.count,
            boards_connected: s.connected,
            handshake_failures: s.handshakeFailures,
            connect_failures: s.connectFailures,
            msg_per_s: ((s.acked - lastAcked) * 1000) / (now - lastTick),
            puback_p50_ms: s.pubackWindow.percentileMs(0.5),
            puback_p99_ms: s.pubackWindow.percentileMs(0.99),
            ...(verifier
              ? {
                  e2e_p50_ms: verifier.e2eWindow.percentileMs(0.5),
                  e2e_p99_ms: verifier.e2eWindow.percentileMs(0.99),
                  duplicates: verifier.duplicates,
                }
              : {}),
            rss_mb: process.memoryUsage().rss / 2 ** 20,
            faults_injected: s.faultsInjected,
          });
        }
        s.pubackWindow.reset();
        verifier?.e2eWindow.reset();
        lastAcked = s.acked;
        lastTick = now;
      }
    }
    o.signal?.removeEventListener("abort", onAbort);
    await fleet.stopSampling();
    const sampledS = fleet.elapsedS();
    const cpuEnd = process.cpuUsage();
    const ackedEnd = fleet.stats.acked;
    const mem = process.memoryUsage();

    log(`stopping: draining ${fleet.pendingMessages()} queued readings`);
    const unacked = await fleet.drain((o.drainTimeoutS ?? 30) * 1000);
    const devices = await fleet.deviceCounts();
    const published = devices.reduce((n, d) => n + d.published, 0);
    const dropped = fleet.stats.outboxDropped;
    if (verifier) {
      // Everything acknowledged should reach the subscriber within moments; give a slow broker time.
      const until = performance.now() + 15_000;
      while (verifier.unique < published - dropped - unacked && performance.now() < until) await sleep(50);
    }

    const s = fleet.stats;
    let verify: EmulatorSummary["verify"] = null;
    if (verifier) {
      const lostExamples: { device: string; missing: number }[] = [];
      let lost = 0;
      for (const d of devices) {
        const t = verifier.tallies.get(d.id);
        const missing = t ? t.missingBelow(d.published) : d.published;
        lost += missing;
        if (missing > 0 && lostExamples.length < 20) lostExamples.push({ device: d.id, missing });
      }
      verify = {
        received: verifier.received,
        unique: verifier.unique,
        duplicates: verifier.duplicates,
        lost,
        otherBoot: verifier.otherBoot,
        rejected: verifier.rejected,
        e2eMs: latencySummary(verifier.e2eLatency),
        e2eSteadyMs: steadySummary(verifier.e2eSteady),
        lostExamples,
      };
    }
    const cpuFrom = steady?.cpu ?? cpuStart;
    const ackedFrom = steady?.acked ?? 0;
    const userS = (cpuEnd.user - cpuFrom.user) / 1e6;
    const systemS = (cpuEnd.system - cpuFrom.system) / 1e6;
    const summary: EmulatorSummary = {
      ok: (verify ? verify.lost === 0 && verify.rejected === 0 : true) && unacked === 0 && dropped === 0,
      boards: o.count,
      workers,
      rateHz: o.rateHz,
      durationS: round(sampledS, 1),
      broker: brokerUrl,
      embeddedBroker: embedded !== undefined,
      encrypt: o.encrypt,
      seed: String(o.seed),
      boot,
      connect: {
        allConnectedS: fleet.allConnectedAtS === undefined ? null : round(fleet.allConnectedAtS, 3),
        connected: s.connected,
        latencyP50Ms: round(s.connectLatency.percentileMs(0.5)),
        latencyP99Ms: round(s.connectLatency.percentileMs(0.99)),
        handshakeFailures: s.handshakeFailures,
        brokerRefused: s.brokerRefused,
        connectFailures: s.connectFailures,
        reconnects: Math.max(0, s.connects - o.count),
      },
      messages: {
        readings: s.readings,
        publishes: s.publishes,
        acked: s.acked,
        resends: s.resends,
        outboxDropped: dropped,
        unacked,
        ackedPerS: round(ackedEnd / Math.max(sampledS, 1e-3), 1),
      },
      pubackMs: latencySummary(s.pubackLatency),
      pubackSteadyMs: steadySummary(s.pubackSteady),
      verify,
      cpu: {
        userS: round(userS, 3),
        systemS: round(systemS, 3),
        usPerMessage: round(((userS + systemS) * 1e6) / Math.max(1, ackedEnd - ackedFrom), 1),
        window: steady
          ? "from all boards connected to end of sampling"
          : "whole run (not every board connected)",
        includes: ["boards", ...(embedded ? ["embedded broker"] : []), ...(verifier ? ["verifier"] : [])],
      },
      memory: {
        rssMiB: round(mem.rss / 2 ** 20, 1),
        heapUsedMiB: round(mem.heapUsed / 2 ** 20, 1),
        bytesPerBoard: Math.round((mem.rss - rssBefore) / o.count),
      },
      // Workers report their faults in batches: put the log back in time order.
      faults: {
        injected: s.faultsInjected,
        log: [...fleet.faultLog].sort((a, b) => a.elapsedS - b.elapsedS),
      },
      devices: devices.map((d) => ({ id: d.id, boot, published: d.published, dropped: d.dropped })),
    };
    if (o.store) {
      storeWrite({
        boards_target: o.count,
        connect_s: summary.connect.allConnectedS ?? Number.NaN,
        handshake_failures: summary.connect.handshakeFailures,
        connect_failures: summary.connect.connectFailures,
        msg_per_s: summary.messages.ackedPerS,
        puback_p50_ms: summary.pubackSteadyMs?.p50 ?? summary.pubackMs.p50,
        puback_p99_ms: summary.pubackSteadyMs?.p99 ?? summary.pubackMs.p99,
        ...(summary.verify
          ? {
              e2e_p50_ms: summary.verify.e2eMs.p50,
              e2e_p99_ms: summary.verify.e2eMs.p99,
              lost: summary.verify.lost,
              duplicates: summary.verify.duplicates,
            }
          : {}),
        cpu_us_per_msg: summary.cpu.usPerMessage,
        bytes_per_board: summary.memory.bytesPerBoard,
        faults_injected: summary.faults.injected,
        final: 1,
      });
      await Promise.all(pendingWrites);
    }
    return summary;
  } finally {
    await cleanup();
  }
}

/** Readings carry millisecond timestamps: below 1 ms the latency is only known to be under 1 ms. */
const ms = (x: number): string => (x < 1 ? "<1 ms" : `${x} ms`);

export function summaryLines(s: EmulatorSummary): string[] {
  const v = s.verify;
  return [
    `${s.ok ? "OK" : "FAILED"}: ${s.boards} boards${s.workers > 1 ? ` on ${s.workers} worker threads` : ""}, ${s.durationS} s at ${s.rateHz} Hz against ${s.embeddedBroker ? "the embedded broker" : s.broker}${s.encrypt ? ", encrypted" : ""}, seed ${s.seed}, boot ${s.boot}`,
    `  connect: all connected in ${s.connect.allConnectedS ?? "-"} s, latency p50 ${s.connect.latencyP50Ms} ms p99 ${s.connect.latencyP99Ms} ms, ` +
      `handshake failures ${s.connect.handshakeFailures} (broker refused ${s.connect.brokerRefused}), connect failures ${s.connect.connectFailures}, reconnects ${s.connect.reconnects}`,
    `  messages: ${s.messages.readings} readings, ${s.messages.acked} acknowledged (${s.messages.ackedPerS}/s), ${s.messages.resends} resent, ` +
      `${s.messages.outboxDropped} dropped by full outboxes, ${s.messages.unacked} never acknowledged`,
    `  PUBACK latency p50 ${s.pubackMs.p50} ms p99 ${s.pubackMs.p99} ms max ${s.pubackMs.max} ms` +
      (s.pubackSteadyMs
        ? `; steady state p50 ${s.pubackSteadyMs.p50} ms p99 ${s.pubackSteadyMs.p99} ms`
        : ""),
    v
      ? `  verified: ${v.unique} unique of ${v.received} received, ${v.duplicates} duplicates, ${v.lost} LOST, ${v.rejected} rejected; ` +
        `end-to-end (device ms clock) p50 ${ms(v.e2eMs.p50)} p99 ${ms(v.e2eMs.p99)} max ${ms(v.e2eMs.max)}` +
        (v.e2eSteadyMs ? `; steady state p50 ${ms(v.e2eSteadyMs.p50)} p99 ${ms(v.e2eSteadyMs.p99)}` : "")
      : "  verification off",
    `  process CPU ${s.cpu.usPerMessage} µs/message for ${s.cpu.includes.join(" + ")} (${s.cpu.window}), ` +
      `memory ${s.memory.bytesPerBoard} B/board, RSS ${s.memory.rssMiB} MiB`,
    `  faults injected: ${s.faults.injected}`,
  ];
}

export async function writeReport(path: string, s: EmulatorSummary): Promise<void> {
  await mkdir(join(path, ".."), { recursive: true });
  await writeFileAtomic(path, JSON.stringify(s, null, 2) + "\n");
}
