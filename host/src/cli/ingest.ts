#!/usr/bin/env node
// `npm run ingest`: the long-running MQTT → store service (also the docker-compose service).
import { readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { pkiPaths } from "../../../pki/src/paths";
import { nodeAead } from "../crypto/node-aead";
import { DeviceKeyCache, loadPayloadKeyring } from "../crypto/device-keys";
import { MessageClassifier } from "../ingest/classify";
import { deadLetterFile } from "../ingest/dead-letter";
import { IngestService } from "../ingest/service";
import { JetStreamSource } from "../ingest/jetstream-source";
import { INGEST_DURABLES, MQTT_MESSAGE_STREAM } from "../broker/nats/message-stream";
import { loadFleet } from "../ingest/sites";
import { ReplayWindow } from "../../../firmware/src/payload/replay-window";
import { influxStore } from "../ingest/store-writer";
import { stateDir } from "../state/state-dir";
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
  const files = {
    cert: `${identity}.pem`,
    key: `${identity}.key.pem`,
    ca: join(dirname(identity), "ca.pem"),
  };
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
      "$0 --broker mqtts://HOST:8883 --store-url URL (--encrypted | --plain) [options]\n\n" +
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
    .option("progress-interval", {
      type: "number",
      default: 10,
      describe: "Seconds between progress lines (0: none)",
    })
    .check((a) => {
      if (a.encrypted === a.plain)
        throw new Error("say whether the fleet encrypts payloads: --encrypted or --plain");
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
      return true;
    })
    .strict()
    .help()
    .parseAsync();

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
  if (argv.encrypted) {
    const ring = await loadPayloadKeyring(state);
    if (ring.size === 0)
      throw new Error(`no payload secrets in ${join(state, "secrets")}: run \`npm run setup\``);
    const keys = new DeviceKeyCache(ring);
    mode = { kind: "encrypted", aead: nodeAead, keyFor: (keyId, sensorId) => keys.keyFor(keyId, sensorId) };
  }
  // With a manifest, it is the one list of devices that exist: anything else is unknown_device.
  const fleet = argv.manifest ? await loadFleet(argv.manifest) : undefined;
  const sites = fleet?.sites ?? new Map<string, string>();

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
    }),
    store: influxStore({ url: argv["store-url"], org: argv.org, bucket: argv.bucket, token }),
    deadLetters: deadLetterFile(argv["dead-letter"]),
    batchSize: argv["batch-size"],
    batchMs: argv["batch-ms"],
    maxHeld: argv["max-held"],
    accountIntervalMs: argv["account-interval"] * 1000,
    metrics: { port: argv["metrics-port"], host: argv["metrics-host"] },
    log,
    onFatal: () => process.exit(1),
  });

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
    `ingest: running (${argv.encrypted ? "encrypted" : "plain"} fleet, ${source ? `JetStream worker ${basename(workerIdentity ?? "")}` : argv.shared ? `shared group ${argv.group}` : "plain subscription"}, metrics http://${argv["metrics-host"]}:${service.metricsPort}/metrics)`,
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
          `duplicates ${t.duplicates}, rejected ${t.rejected}, gaps ${t.gaps}, held ${service.held}, store ${service.storeUp ? "up" : "DOWN"}`,
      );
      last = t;
    }, argv["progress-interval"] * 1000).unref();
  }
}

main().catch((err: unknown) => {
  console.error(`ingest: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
