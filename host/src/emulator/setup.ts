/**
 * Putting one emulator run together, before any board samples: open-file limit, PKI, broker (embedded unless
 * one is given), payload keys, boot number, fault scenario, the fleet (one thread or sharded) and the verifying
 * subscriber. Changes when what a run needs changes; how it runs is run.ts, what it reports summary.ts.
 */
import type { BrokerAddress } from "../../../firmware/src/app/broker-rotation";
import type { ConfirmationMode } from "../../../firmware/src/app/mqtt-session";
import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { deviceIdSequence } from "../../../firmware/src/telemetry/vocabulary";
import { ensureDevPki, provisionedBrokerPins } from "../../../pki/src/index";
import type { KeyType, PkiPaths } from "../../../pki/src/index";
import { writeFileAtomic } from "../../../shared/state-dir";
import { startEmbeddedBroker } from "../broker/embedded-broker";
import type { EmbeddedBroker } from "../broker/embedded-broker";
import { MONITOR_IDENTITY } from "../broker/topic-policy";
import { DeviceKeyCache, loadOrCreatePayloadMaster } from "../crypto/device-keys";
import { GrantsView } from "../crypto/payload-grants";
import { nodeAead } from "../crypto/node-aead";
import { ensureFdLimit } from "./fd-limit";
import { loadScenario, randomScenario, resolveScenario } from "./faults/scenario";
import type { Scenario } from "./faults/scenario";
import { Fleet } from "./fleet";
import type { FaultLogEntry, FleetControl, FleetOptions, FlashSettings } from "./fleet";
import { ShardedFleet } from "./shards/sharded-fleet";
import { Verifier } from "./verifier";

/** What a run is made of: the options of runEmulator that shape it. */
export interface RunSetupOptions {
  count: number;
  rateHz: number;
  /** Seconds; undefined: until the run's signal aborts. */
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
  /** End-to-end confirmations in the boards' sessions (default auto). */
  confirmations?: ConfirmationMode;
  confirmTimeoutS?: number;
  /** The boards' flash ring (default auto: memory flash for the boards a power_cut targets). */
  flash?: FlashSettings;
  keepReadings?: boolean;
  onFault?: (e: FaultLogEntry) => void;
}

export interface RunSetup {
  fleet: FleetControl;
  verifier: Verifier | undefined;
  /** Set when this process runs the broker (Aedes). */
  embedded: EmbeddedBroker | undefined;
  brokerUrl: string;
  boot: number;
  /** Threads running the boards (1: this thread). */
  workers: number;
  /** Shuts down the fleet, the verifier and the embedded broker; never throws. */
  stop(): Promise<void>;
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

/**
 * A boot number that grows with every run from this state folder, so (device, boot, seq) and envelope nonces never
 * repeat. `reserve` more after it are kept for the run's power-cut reboots (a board cut k times boots as boot + k).
 */
export async function nextBoot(stateDir: string, reserve = 0): Promise<number> {
  const path = join(stateDir, "emulator", "boot-counter");
  let last = 0;
  try {
    last = Number.parseInt(await readFile(path, "utf8"), 10) || 0;
  } catch {
    // first run
  }
  const boot = Math.max(last + 1, 1);
  await writeFileAtomic(path, `${boot + reserve}\n`);
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

export function parseBrokerUrl(url: string): { host: string; port: number } {
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

async function ensurePki(
  o: RunSetupOptions,
  ids: string[],
  verifyIdentity: string,
  log: (line: string) => void,
): Promise<PkiPaths> {
  log(
    `PKI: ensuring CA, broker, ${verifyIdentity} and ${o.count} device certificates in ${join(o.stateDir, "pki")}`,
  );
  let lastPct = -1;
  return ensureDevPki({
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
}

/** The faults of a run, in this order: those given, a scenario file's, random ones. */
async function buildScenario(o: RunSetupOptions): Promise<Scenario> {
  const scenario: Scenario = { faults: [] };
  if (o.scenario) scenario.faults.push(...o.scenario.faults);
  if (o.scenarioFile) scenario.faults.push(...(await loadScenario(o.scenarioFile)).faults);
  if (o.randomFaultsPerMin)
    scenario.faults.push(...randomScenario(o.seed, o.randomFaultsPerMin, o.durationS ?? 24 * 3600).faults);
  return scenario;
}

/** Everything up to the verifier subscribed; the boards are created but not yet initialised or started. */
export async function setUpRun(o: RunSetupOptions, log: (line: string) => void): Promise<RunSetup> {
  const ids = deviceIds(o.count, o.idPrefix);
  const verifyIdentity = o.verifyIdentity ?? MONITOR_IDENTITY;
  const external = o.brokerUrl ? parseBrokerUrls(o.brokerUrl) : undefined;
  // Each board is one socket; the embedded broker holds the other end in this same process.
  ensureFdLimit(o.count * (o.brokerUrl ? 1 : 2) + 200);

  const pki: PkiPaths = await ensurePki(o, ids, verifyIdentity, log);

  let embedded: EmbeddedBroker | undefined;
  let fleet: FleetControl | undefined;
  let verifier: Verifier | undefined;
  const stop = async (): Promise<void> => {
    await fleet?.shutdown().catch(() => undefined);
    verifier?.stop();
    await embedded?.stop().catch(() => undefined);
  };

  try {
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
    const scenario = await buildScenario(o);
    // Each power_cut reboots its boards once, with the next boot number.
    const reboots = scenario.faults.filter((f) => f.type === "power_cut").length;
    const boot = o.boot ?? (await nextBoot(o.stateDir, reboots));
    const faults = resolveScenario(scenario, ids, o.seed);

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
      ...(o.confirmations ? { confirmations: o.confirmations } : {}),
      ...(o.confirmTimeoutS ? { confirmTimeoutMs: o.confirmTimeoutS * 1000 } : {}),
      ...(o.flash ? { flash: o.flash } : {}),
      ...(o.onFault ? { onFault: o.onFault } : {}),
    };
    const workers = Math.min(o.workers ?? 1, o.count);
    const boards: FleetControl =
      workers > 1 ? new ShardedFleet({ ...fleetOptions, workers }) : new Fleet(fleetOptions);
    fleet = boards;

    if (o.verify) {
      // Through the grants as the ingest: a field rotation moves a board to a new key id (pending, then current).
      const keys = master
        ? new DeviceKeyCache(new Map([[keyId, master]]), new GrantsView({ stateDir: o.stateDir }))
        : undefined;
      verifier = new Verifier({
        host: target.host,
        port: target.port,
        caFile: pki.caBundle,
        certFile: pki.service(verifyIdentity).cert,
        keyFile: pki.service(verifyIdentity).key,
        // Mosquitto replaces it with the CN (use_username_as_clientid); it names the session elsewhere.
        clientId: `${verifyIdentity}-emulator-verify-${process.pid}-${boot}`,
        expectedBoot: boot,
        bootSpan: reboots + 1,
        decode: keys
          ? { kind: "encrypted", aead: nodeAead, keyFor: (k, id) => keys.keyFor(k, id) }
          : { kind: "plain" },
        clockUntrusted: (id) => boards.clockUntrusted(id),
        keepReadings: o.keepReadings ?? false,
      });
      await verifier.start();
      verifier.onReconnecting = (err) =>
        log(`verifier: ${err.message}; reconnecting (its persistent session keeps what arrives meanwhile)`);
    }
    return { fleet: boards, verifier, embedded, brokerUrl, boot, workers, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
