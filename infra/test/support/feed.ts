// A short emulated run through the real parts: Debian's mosquitto with the project's config and a
// dev PKI (P-256 device keys, for speed), the real ingest CLI writing to the given store, and the
// real emulator's boards publishing encrypted readings (QoS 1) and their retained online status.
// The boards keep running until stop(), so "online" is true while the tests query.
// Benchmark figures have no writer in that path, so they are written as line protocol directly.
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import mqtt from "mqtt";
import { ensureDevPki } from "../../../pki/src/index";
import { startMosquitto, type MosquittoHandle } from "../../../host/src/broker/mosquitto";
import { loadOrCreatePayloadMaster } from "../../../host/src/crypto/device-keys";
import { deviceIds, runEmulator, type EmulatorSummary } from "../../../host/src/emulator/run";
import { statusTopic, telemetryTopic } from "../../../firmware/src/telemetry/topics";
import { sealEnvelope } from "../../../firmware/src/envelope/envelope";
import { encodeReading } from "../../../firmware/src/payload/codec";
import { deriveDeviceKey } from "../../../host/src/crypto/device-keys";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { sampleReading } from "../../../host/testkit/ingest/fleet-publisher";
import { repoRoot } from "../../../shared/state-dir";
import { BENCH_FIELDS } from "../../grafana/src/definitions/benchmark";
import { writePkiExpiry } from "../../../host/src/store/pki-expiry";
import { BrokerConnectionLog } from "../../../host/src/broker/connection-log";
import { startBrokerConnectionsExporter } from "../../../host/src/store/broker-connections";

export interface FeedResult {
  boards: string[];
  /** When the boards started (ms epoch). */
  startedMs: number;
  /** The ingest's reason for a payload that is not an envelope. */
  notEnvelopeReason: string;
  /** Stops the boards, the ingest (gracefully) and the broker. */
  stop(): Promise<void>;
}

const BOARD_COUNT = 3;
const BOARD_PREFIX = "est-infra-";
const RATE_HZ = 2;
const KEY_ID = 1;
/** Past the ingest's default burst (300) at once: the rest is refused as rate_exceeded. */
export const FLOOD_MESSAGES = 600;
export const STORM_CONNECTS = 5;
/** What the ingest calls the non-envelopes the attack sends (shorter than an envelope's header and tag). */
const NOT_ENVELOPE_REASON = "truncated";

async function startIngest(o: {
  stateDir: string;
  brokerUrl: string;
  storeUrl: string;
}): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(repoRoot(), "host/src/cli/ingest.ts"),
      "--broker",
      o.brokerUrl,
      "--store-url",
      o.storeUrl,
      "--encrypted",
      "--metrics-port",
      "0",
      "--account-interval",
      "1",
      "--progress-interval",
      "0",
      "--batch-ms",
      "20",
    ],
    {
      cwd: repoRoot(),
      env: { ...process.env, EST_STATE_DIR: o.stateDir },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (c: string) => (stderr = (stderr + c).slice(-4000)));
  const lines = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ingest did not report ready: ${stderr}`)), 60_000);
    child.once("exit", (code) => reject(new Error(`ingest exited ${code}: ${stderr}`)));
    lines.on("line", (line) => {
      if (line.includes('"ready":true')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return child;
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function writeLines(storeUrl: string, lines: string[]): Promise<void> {
  const res = await fetch(`${storeUrl}/api/v2/write?precision=ms&org=electrolyser&bucket=telemetry`, {
    method: "POST",
    body: lines.join("\n"),
  });
  if (!res.ok) throw new Error(`write: HTTP ${res.status} ${await res.text()}`);
}

/** Polls until `check` holds or the time is up. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function seriesCount(storeUrl: string, selector: string): Promise<number> {
  const res = await fetch(
    `${storeUrl}/api/v1/series?${new URLSearchParams({ "match[]": selector, start: String(Math.floor(Date.now() / 1000) - 3600) })}`,
  );
  const body = (await res.json()) as { data?: unknown[] };
  return body.data?.length ?? 0;
}

/**
 * How long the boards keep publishing after their first reading is stored, before the queries run:
 * a range query evaluates at step-aligned instants no later than now, so data only a second or two
 * old can fall after the last of them; a few steps of history avoid that.
 */
const HISTORY_MS = 12_000;

export async function feedThroughIngest(o: { dir: string; storeUrl: string }): Promise<FeedResult> {
  const stateDir = join(o.dir, "state");
  const boards = deviceIds(BOARD_COUNT, BOARD_PREFIX);
  const pki = await ensureDevPki({ stateDir, devices: boards, deviceKeyType: "p256", services: ["ingest"] });
  // The ingest loads the fleet's payload secrets at start: create the one the boards will use first.
  const master = await loadOrCreatePayloadMaster(stateDir, KEY_ID);
  let broker: MosquittoHandle | undefined;
  let ingest: ChildProcess | undefined;
  let bad: mqtt.MqttClient | undefined;
  const abort = new AbortController();
  let emulator: Promise<EmulatorSummary | undefined> = Promise.resolve(undefined);
  let connections: { stop(): void } | undefined;
  const stop = async () => {
    connections?.stop();
    abort.abort();
    await emulator.catch(() => undefined);
    await bad?.endAsync(true).catch(() => undefined);
    await stopChild(ingest);
    await broker?.stop();
  };
  try {
    // Connects and refused handshakes from the broker's log, as `npm run stack` exports them.
    const connectionLog = new BrokerConnectionLog();
    broker = await startMosquitto({
      pki,
      dataDir: join(o.dir, "broker"),
      onLogLine: (line) => connectionLog.feed(line),
    });
    connections = startBrokerConnectionsExporter(
      { storeUrl: o.storeUrl, everyMs: 1000, log: () => undefined },
      connectionLog,
    );
    ingest = await startIngest({ stateDir, brokerUrl: broker.url, storeUrl: o.storeUrl });
    // An emulated attack, before the boards start (the broker binds the client id to the certificate CN,
    // so these connections and the emulated board on the same certificate would replace each other):
    //  board 0 sends something that is not an envelope, and a sealed reading with one bit flipped (a bad
    //  signature: tag_mismatch); board 1 floods past its allowance (rate_exceeded); board 2 reconnects
    //  over and over, announcing itself online each time (a reconnect storm).
    const ca = await readFile(pki.caBundle);
    const connectAs = async (id: string, n: number) =>
      mqtt.connectAsync(broker!.url, {
        ca,
        cert: await readFile(pki.device(id).cert),
        key: await readFile(pki.device(id).key),
        clientId: `${id}-attack-${n}`,
        reconnectPeriod: 0,
      });
    const [b0, b1, b2] = boards as [string, string, string];
    bad = await connectAs(b0, 0);
    await bad.publishAsync(telemetryTopic(b0), "{not an envelope", { qos: 1 });
    await bad.endAsync();
    bad = await connectAs(b1, 0);
    await bad.publishAsync(telemetryTopic(b1), "x", { qos: 1 });
    await bad.endAsync();
    // The account is cumulative since the ingest started: the attack must come after its first figures
    // are stored, so increase() sees the counters rise (a series that first appears at 300 shows no increase).
    await until("the attackers' first account lines", async () => {
      const res = await fetch(
        `${o.storeUrl}/api/v1/query?${new URLSearchParams({ query: "count_over_time(ingest_received[10s])" })}`,
      );
      const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
      return body.data.result.length === 2 && body.data.result.every((r) => Number(r.value[1]) >= 2);
    });
    bad = await connectAs(b0, 1);
    const forged = sealEnvelope(nodeAead, deriveDeviceKey(master, b0), {
      keyId: KEY_ID,
      boot: 1,
      counter: 1_000_000,
      topic: telemetryTopic(b0),
      sensorId: b0,
      plaintext: encodeReading(sampleReading(b0, 1_000_000, Date.now())),
    });
    forged[20] = forged[20]! ^ 0x01;
    await bad.publishAsync(telemetryTopic(b0), Buffer.from(forged), { qos: 1 });
    await bad.endAsync();
    bad = await connectAs(b1, 1);
    const flooder = bad;
    await Promise.all(
      Array.from({ length: FLOOD_MESSAGES }, () => flooder.publishAsync(telemetryTopic(b1), "x", { qos: 1 })),
    );
    await bad.endAsync();
    // Certificates the broker must refuse: one from another CA, and none at all.
    const foreign = await ensureDevPki({
      stateDir: join(o.dir, "foreign"),
      devices: [b0],
      deviceKeyType: "p256",
    });
    for (const creds of [
      { cert: await readFile(foreign.device(b0).cert), key: await readFile(foreign.device(b0).key) },
      {},
    ]) {
      await mqtt
        .connectAsync(broker.url, {
          ca,
          ...creds,
          clientId: `${b0}-foreign`,
          reconnectPeriod: 0,
          connectTimeout: 5000,
        })
        .then(
          (c) => c.endAsync(true),
          () => undefined,
        );
    }
    for (let n = 0; n < STORM_CONNECTS; n++) {
      bad = await connectAs(b2, n + 1);
      await bad.publishAsync(statusTopic(b2), "online", { qos: 1 });
      await bad.endAsync();
    }

    const startedMs = Date.now();
    const started = new Promise<void>((resolve, reject) => {
      emulator = runEmulator({
        count: BOARD_COUNT,
        rateHz: RATE_HZ,
        brokerUrl: broker!.url,
        encrypt: true,
        keyId: KEY_ID,
        seed: "infra-test",
        connectRate: 100,
        stateDir,
        verify: false,
        deviceKeyType: "p256",
        idPrefix: BOARD_PREFIX,
        signal: abort.signal,
        onStarted: () => resolve(),
      });
      emulator.then(() => reject(new Error("the emulator ended before its boards started")), reject);
    });
    await started;

    await writeLines(
      o.storeUrl,
      ["warm", "hot"].flatMap((run, r) =>
        ["emulator", "broker", "ingest"].flatMap((component, c) =>
          [0, 1, 2].map((k) => {
            const f = BENCH_FIELDS;
            const fields = [
              `${f.handshakesOk}=${100 + k}`,
              `${f.handshakesFailed}=${k}`,
              `${f.handshakeMsP50}=${12 + r}`,
              `${f.handshakeMsP99}=${40 + c}`,
              `${f.publishMsP50}=${3 + k}`,
              `${f.publishMsP95}=${8 + k}`,
              `${f.publishMsP99}=${15 + k}`,
              `${f.cpuPct}=${20 + 10 * c}`,
              `${f.rssMb}=${80 + c}`,
              `${f.packetLossPct}=0`,
              `${f.messagesPerS}=${1000 + k}`,
            ];
            return `bench,run=${run},component=${component} ${fields.join(",")} ${startedMs + k * 2000}`;
          }),
        ),
      ),
    );

    // The PKI's expiry figures, by the exporter `npm run stack` runs (host/src/store/pki-expiry.ts).
    await writePkiExpiry({ stateDir, storeUrl: o.storeUrl });

    await until(
      "every board's readings in the store",
      async () => (await seriesCount(o.storeUrl, "electrolyser_seq")) === BOARD_COUNT,
    );
    const firstStoredMs = Date.now();
    await until(
      "the retained statuses in the store",
      async () => (await seriesCount(o.storeUrl, "device_status_online")) === BOARD_COUNT,
    );
    // Counters and readings need a few points for increase(), rate() and per-step windows.
    for (const metric of [
      "electrolyser_seq",
      "ingest_written",
      "ingest_rejected_count",
      "ingest_rejected_rate_exceeded",
      "broker_refused_count",
      "broker_connections_connects",
    ]) {
      await until(`${metric}: several points per series`, async () => {
        const res = await fetch(
          `${o.storeUrl}/api/v1/query?${new URLSearchParams({ query: `count_over_time(${metric}[5s])` })}`,
        );
        const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
        return body.data.result.length > 0 && body.data.result.every((r) => Number(r.value[1]) >= 3);
      });
    }
    const rest = firstStoredMs + HISTORY_MS - Date.now();
    if (rest > 0) await new Promise((r) => setTimeout(r, rest));
    return { boards, startedMs, notEnvelopeReason: NOT_ENVELOPE_REASON, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
