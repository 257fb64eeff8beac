#!/usr/bin/env node
// `npm run ingest`: the long-running MQTT → store service (also the docker-compose service).
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { pkiPaths } from "../../../pki/src/paths";
import { nodeAead } from "../crypto/node-aead";
import { DeviceKeyCache, loadPayloadKeyring } from "../crypto/device-keys";
import { GrantsView } from "../crypto/payload-grants";
import { MessageClassifier } from "../ingest/classify";
import { deadLetterFile } from "../ingest/dead-letter";
import { DEFAULT_RATE_ALLOWANCE, DEFAULT_RATE_BURST, DeviceRateLimiter } from "../ingest/rate-limit";
import { IngestService } from "../ingest/service";
import { JetStreamSource } from "../ingest/jetstream-source";
import { INGEST_DURABLES, MQTT_MESSAGE_STREAM } from "../broker/nats/message-stream";
import { identityFiles } from "../broker/nats/route-pki";
import { loadFleet } from "../ingest/sites";
import { ReplayWindow } from "../../../firmware/src/payload/replay-window";
import { influxStore } from "../ingest/store-writer";
import { stateDir } from "../../../shared/state-dir";
import {
  loadFleetSettings,
  resolveManifest,
  resolvePayloadMode,
  settingsPathFrom,
} from "../settings/fleet-settings";
import {
  detectStoreDurability,
  durableOnAccept,
  victoriaMetricsHorizon,
  type StoreDurability,
} from "../ingest/confirmer";
import { maxReadingAgeMs, parseRetention } from "../store/retention";
import type { DecodeMode } from "../../../firmware/src/payload/telemetry-message";

const log = (line: string) => console.error(`${new Date().toISOString()} ${line}`);

async function readSecretFile(path: string, what: string): Promise<string> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch (err) {
    throw new Error(`cannot read ${what} ${path} (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

/** A JetStream worker's source: the cluster's durables, this worker's own route-CA identity. */
async function jetstreamWorker(servers: string, identity: string, maxHeld: number): Promise<JetStreamSource> {
  const files = identityFiles(identity);
  // Read now, so a wrong path is a clear error before anything connects.
  await readSecretFile(files.cert, "worker certificate");
  await readSecretFile(files.key, "worker private key");
  await readSecretFile(files.ca, "route CA");
  return new JetStreamSource({
    servers: servers.split(",").map((s) => s.trim()),
    tls: files,
    stream: MQTT_MESSAGE_STREAM,
    durables: Object.values(INGEST_DURABLES).map((d) => d.name),
    maxHeld,
    name: `est-${basename(identity)}`,
    log,
  });
}

async function main(): Promise<void> {
  const state = stateDir();
  const pki = pkiPaths(state);
  const argv = await yargs(hideBin(process.argv))
    .scriptName("npm run ingest --")
    .usage(
      "$0 --broker mqtts://HOST:8883 --store-url URL (--settings FILE | --encrypted | --plain) [options]\n\n" +
        "Subscribes to every board's telemetry (QoS 1, persistent session, shared subscription), checks and " +
        "decrypts each message, writes it to InfluxDB v2 / VictoriaMetrics and acknowledges it to the broker " +
        "only once the store accepted it. Refused messages go to the dead-letter file, never to the store.",
    )
    .option("broker", { type: "string", describe: "Broker URL, mqtts://host:port (unless --jetstream)" })
    .option("jetstream", {
      type: "string",
      describe:
        "NATS cluster only: run as one of several ingest workers, pulling from the cluster's JetStream durables instead of subscribing over MQTT; the nodes' NATS ports, tls://host:port,tls://host:port",
    })
    .option("jetstream-identity", {
      type: "string",
      describe:
        "The worker's route-CA identity: PREFIX.pem and PREFIX.key.pem, the CA beside them as ca.pem (the cluster's <data>/route-pki/client-ingest-worker-N); each worker its own",
    })
    .option("store-url", {
      type: "string",
      demandOption: true,
      describe: "InfluxDB v2 / VictoriaMetrics base URL (its /api/v2/write is used)",
    })
    .option("org", { type: "string", default: "electrolyser", describe: "InfluxDB organisation" })
    .option("bucket", { type: "string", default: "telemetry", describe: "InfluxDB bucket" })
    .option("token-file", {
      type: "string",
      describe: "File holding the InfluxDB write token (VictoriaMetrics needs none)",
    })
    .option("encrypted", {
      type: "boolean",
      describe: "The fleet seals payloads in the AES-256-GCM envelope",
    })
    .option("plain", { type: "boolean", describe: "The fleet sends plain JSON payloads" })
    .option("settings", {
      type: "string",
      describe:
        "Fleet settings file (payload mode, manifest; default $EST_FLEET_SETTINGS): --encrypted/--plain and --manifest may only repeat it",
    })
    .option("group", {
      type: "string",
      default: "ingest",
      describe: "Shared-subscription group; ingest processes in one group split the load",
    })
    .option("shared", {
      type: "boolean",
      // Off by default: Mosquitto 2.0.11 (Debian 12) forgets a persistent session's shared
      // subscription over a broker restart and drops what boards publish until the ingest
      // resubscribes; a plain subscription loses nothing. Turn it on to split the load across
      // several ingest processes on Mosquitto >= 2.0.12, each with its own identity.
      default: false,
      describe:
        "Subscribe through $share/<group>/… so several ingest processes split the load (needs Mosquitto >= 2.0.12 and one certificate per process); default: a plain subscription, which survives a broker restart on every Mosquitto 2.0",
    })
    .option("mqtt-version", {
      type: "number",
      choices: [4, 5],
      default: 5,
      describe: "MQTT protocol: 5, or 4 (3.1.1) for brokers that speak nothing newer, such as NATS 2.9",
    })
    .option("client-id", {
      type: "string",
      describe:
        "Fixed MQTT client id (default ingest-<group>). The project's broker uses the certificate CN as the client id instead, so every ingest process needs its own certificate (--cert/--key)",
    })
    .option("metrics-port", {
      type: "number",
      default: 9464,
      describe: "Prometheus /metrics port (0: pick a free one)",
    })
    .option("metrics-host", { type: "string", default: "127.0.0.1", describe: "Address /metrics listens on" })
    .option("ca", {
      type: "string",
      default: pki.caBundle,
      describe: "CA bundle that signed the broker certificate",
    })
    .option("cert", {
      type: "string",
      default: pki.service("ingest").cert,
      describe: "Ingest client certificate",
    })
    .option("key", {
      type: "string",
      default: pki.service("ingest").key,
      describe: "Ingest client private key",
    })
    .option("manifest", {
      type: "string",
      describe:
        "Fleet manifest (JSON/YAML): each device's site; devices it does not list are refused (unknown_device)",
    })
    .option("dead-letter", {
      type: "string",
      default: join(state, "ingest", "dead-letter.jsonl"),
      describe: "Dead-letter file (JSON lines)",
    })
    .option("batch-size", { type: "number", default: 2000, describe: "Lines per store write" })
    .option("batch-ms", {
      type: "number",
      default: 50,
      describe: "Longest wait before a partial batch is written",
    })
    .option("max-held", {
      type: "number",
      default: 10000,
      describe: "Unacknowledged messages at most (also the MQTT Receive Maximum)",
    })
    .option("max-confirm-pending", {
      type: "number",
      default: 200000,
      describe:
        'readings accepted by the store and awaiting durability (--confirm) at most; past it writing waits and the backlog stays with the broker. The ingest holds at most max-held + 1 + batch-size + this (README "Durability")',
    })
    .option("account-interval", {
      type: "number",
      default: 10,
      describe: "Seconds between writes of the account to the store",
    })
    .option("retention", {
      type: "string",
      default: "30d",
      describe:
        "The store's retention (h, d or w; compose: INFLUXDB_RETENTION); older readings are refused as timestamp_out_of_range",
    })
    .option("rate-allowance", {
      type: "number",
      default: DEFAULT_RATE_ALLOWANCE,
      describe:
        "A device may send this many times its configured rate (the manifest's intervalMs; default 1/s) before its excess is refused as rate_exceeded; scaled up while the whole fleet catches up. 0: no limit",
    })
    .option("rate-burst", {
      type: "number",
      default: DEFAULT_RATE_BURST,
      describe: "Messages a device may send at once beyond its rate (a reconnecting board's backlog)",
    })
    .option("progress-interval", {
      type: "number",
      default: 10,
      describe: "Seconds between progress lines (0: none)",
    })
    .option("confirm", {
      choices: ["on", "off"] as const,
      default: "on" as const,
      describe:
        "end-to-end confirmations: tell each board (electrolyser/<id>/down/stored, QoS 1, at most once per --confirm-interval) which readings the store holds durably, so it may forget them",
    })
    .option("confirm-interval", {
      type: "number",
      // Measured with 1,000 boards at 1 Hz (README "Durability"): 1 s costs the broker 22 % more CPU per reading,
      // 5 s about 1 %; the boards hold 4 s more readings for it.
      default: 5,
      describe:
        "seconds between confirmation rounds: each board hears at most once per round (longer: fewer messages through the broker, readings held longer on the boards)",
    })
    .option("store-kind", {
      choices: ["auto", "influxdb2", "victoria-metrics"] as const,
      default: "auto" as const,
      describe:
        "what a 2xx from the store means for --confirm: InfluxDB 2 is durable on 204 (WAL fsync); VictoriaMetrics only after --durable-horizon; auto reads the store's /metrics",
    })
    .option("durable-horizon", {
      type: "number",
      default: 30,
      describe:
        "seconds a VictoriaMetrics write must be outlived by the same store process before it is confirmed (measured on 1.79: lost to a SIGKILL up to 10 s after the 204, kept from 12 s)",
    })
    .check((a) => {
      if (!(a["durable-horizon"] >= 0)) throw new Error("--durable-horizon must be >= 0 seconds");
      if (!(a["confirm-interval"] >= 0.1 && a["confirm-interval"] <= 60))
        throw new Error("--confirm-interval must be 0.1 to 60 seconds");
      if (a.encrypted && a.plain) throw new Error("choose one of --encrypted and --plain");
      if (!a.encrypted && !a.plain && !settingsPathFrom(a.settings))
        throw new Error("say whether the fleet encrypts payloads: --settings FILE, --encrypted or --plain");
      if (a.jetstream !== undefined) {
        if (a.broker !== undefined) throw new Error("give --broker or --jetstream, not both");
        if (!a["jetstream-identity"])
          throw new Error("--jetstream needs --jetstream-identity (one per worker)");
        for (const u of a.jetstream.split(","))
          if (!/^tls:\/\/[^/\s]+:\d+$/.test(u.trim()))
            throw new Error(`--jetstream: "${u}" is not tls://host:port`);
      } else if (a.broker === undefined) throw new Error("--broker mqtts://host:port is required");
      else if (!/^mqtts?:\/\//.test(a.broker)) throw new Error("--broker must be an mqtts:// URL");
      if (a.shared && !/^[A-Za-z0-9_-]{1,64}$/.test(a.group))
        throw new Error("--group must be 1-64 letters, digits, '_' or '-'");
      parseRetention(a.retention);
      if (!(a["rate-allowance"] >= 0)) throw new Error("--rate-allowance must be 0 or more");
      if (!(a["rate-burst"] >= 1)) throw new Error("--rate-burst must be at least 1");
      return true;
    })
    .strict()
    .help()
    .parseAsync();

  const settingsPath = settingsPathFrom(argv.settings);
  const settings = settingsPath ? await loadFleetSettings(settingsPath) : undefined;
  const payloadMode = resolvePayloadMode(
    settings,
    argv.encrypted ? "encrypted" : argv.plain ? "plain" : undefined,
    argv.encrypted ? "--encrypted" : "--plain",
  );
  const manifestPath = resolveManifest(settings, argv.manifest);
  const token = argv["token-file"] ? await readSecretFile(argv["token-file"], "token file") : undefined;
  const workerIdentity = argv["jetstream-identity"];
  const source =
    argv.jetstream !== undefined && workerIdentity
      ? await jetstreamWorker(argv.jetstream, workerIdentity, argv["max-held"])
      : undefined;
  const tls = source
    ? { ca: "", cert: "", key: "" }
    : {
        ca: await readSecretFile(argv.ca, "CA bundle"),
        cert: await readSecretFile(argv.cert, "certificate"),
        key: await readSecretFile(argv.key, "private key"),
      };
  let mode: DecodeMode = { kind: "plain" };
  if (payloadMode === "encrypted") {
    const ring = await loadPayloadKeyring(state);
    if (ring.size === 0)
      throw new Error(`no payload secrets in ${join(state, "secrets")}: run \`npm run setup\``);
    // Which key ids each provisioned device holds (provisioning/payload-keys.json, written by provisioning):
    // only those open its envelopes; a retired one is refused as retired_key.
    const keys = new DeviceKeyCache(ring, new GrantsView({ stateDir: state }));
    mode = { kind: "encrypted", aead: nodeAead, keyFor: (keyId, sensorId) => keys.keyFor(keyId, sensorId) };
  }
  // With a manifest, it is the one list of devices that exist: anything else is unknown_device.
  const fleet = manifestPath ? await loadFleet(manifestPath) : undefined;
  const sites = fleet?.sites ?? new Map<string, string>();

  const rateLimit =
    argv["rate-allowance"] > 0
      ? new DeviceRateLimiter({
          rateOf: (id) => fleet?.rates.get(id),
          allowance: argv["rate-allowance"],
          burst: argv["rate-burst"],
        })
      : undefined;
  const service = new IngestService({
    brokerUrl: argv.broker ?? "",
    ...(source ? { source } : {}),
    protocolVersion: argv["mqtt-version"] === 4 ? 4 : 5,
    tls,
    clientId: argv["client-id"] ?? `ingest-${argv.group}`,
    group: argv.shared ? argv.group : "",
    classifier: new MessageClassifier({
      mode,
      siteOf: (id) => sites.get(id),
      // A re-delivered window (up to --max-held messages, possibly all from one board) must still
      // look like duplicates, not replays: the window covers at least that many sequence numbers.
      window: new ReplayWindow({ size: Math.max(4096, Math.ceil(argv["max-held"] / 32) * 32) }),
      ...(fleet ? { isKnownDevice: (id: string) => fleet.ids.has(id) } : {}),
      maxAgeMs: maxReadingAgeMs(parseRetention(argv.retention)),
      ...(rateLimit ? { rateLimit } : {}),
    }),
    store: influxStore({ url: argv["store-url"], org: argv.org, bucket: argv.bucket, token }),
    deadLetters: deadLetterFile(argv["dead-letter"]),
    batchSize: argv["batch-size"],
    batchMs: argv["batch-ms"],
    maxHeld: argv["max-held"],
    maxConfirmPending: argv["max-confirm-pending"],
    accountIntervalMs: argv["account-interval"] * 1000,
    metrics: { port: argv["metrics-port"], host: argv["metrics-host"] },
    ...(argv.confirm === "on"
      ? {
          confirm: {
            durability: storeDurability(argv),
            intervalMs: Math.round(argv["confirm-interval"] * 1000),
          },
        }
      : {}),
    log,
    onFatal: () => process.exit(1),
  });

  if (rateLimit) service.account.configureRates((id) => rateLimit.configuredRate(id));

  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) {
      log(`ingest: ${signal} again, exiting without flushing`);
      process.exit(1);
    }
    stopping = true;
    log(`ingest: ${signal}: flushing and disconnecting`);
    service.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log(`ingest: shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));

  await service.start();
  log(
    `ingest: running (${payloadMode} fleet${fleet ? ` of ${fleet.ids.size} devices` : ", any device of the CA"}, ${source ? `JetStream worker ${basename(workerIdentity ?? "")}` : argv.shared ? `shared group ${argv.group}` : "plain subscription"}, metrics http://${argv["metrics-host"]}:${service.metricsPort}/metrics)`,
  );
  // A parent (tests, the local stack) reads this line to find the metrics port.
  console.log(JSON.stringify({ ready: true, metricsPort: service.metricsPort, pid: process.pid }));

  if (argv["progress-interval"] > 0) {
    let last = service.account.totals();
    setInterval(() => {
      const t = service.account.totals();
      const dt = argv["progress-interval"];
      log(
        `ingest: received ${t.received} (${Math.round((t.received - last.received) / dt)}/s), written ${t.written}, ` +
          `duplicates ${t.duplicates}, rejected ${t.rejected}, gaps ${t.gaps}, held ${service.held}, store ${service.storeUp ? "up" : "DOWN"}` +
          (service.confirmer
            ? `, confirmed ${service.confirmer.counts.confirmedReadings} (${service.confirmer.pending} awaiting durability)`
            : ""),
      );
      last = t;
    }, argv["progress-interval"] * 1000).unref();
  }
}

function storeDurability(a: {
  "store-url": string;
  "store-kind": "auto" | "influxdb2" | "victoria-metrics";
  "durable-horizon": number;
}): StoreDurability {
  const storeUrl = a["store-url"];
  const horizonMs = a["durable-horizon"] * 1000;
  if (a["store-kind"] === "influxdb2") return durableOnAccept();
  if (a["store-kind"] === "victoria-metrics") return victoriaMetricsHorizon({ storeUrl, horizonMs });
  return detectStoreDurability({
    storeUrl,
    horizonMs,
    onDetected: (rule) => log(`ingest: confirmations: a write is durable ${rule.name}`),
  });
}

main().catch((err: unknown) => {
  console.error(`ingest: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
