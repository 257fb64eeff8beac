#!/usr/bin/env node
// `npm run emulate -- --count N ...`: a fleet of emulated electrolyser boards over mutual-TLS MQTT.
import { deviceIdProblem } from "../../../manifests/src/device-id";
import { loadFleetSettings, resolvePayloadMode, settingsPathFrom } from "../settings/fleet-settings";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { appendFileSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { stateDir } from "../../../shared/state-dir";
import { LiveView, STEADY_STATE_LINE } from "../emulator/live-view";
import { defaultWorkers, runEmulator, summaryLines, writeReport } from "../emulator/run";

const argv = await yargs(hideBin(process.argv))
  .scriptName("npm run emulate --")
  .usage(
    "$0 --count N [options]\n\nEmulates N electrolyser boards, each with its own certificate, physics model and outbox, " +
      "publishing QoS 1 telemetry over mutual TLS. Without --broker an embedded broker (Aedes) with the fleet's topic rules " +
      "is started and a development PKI is generated into the state folder on first use. Runs until Ctrl-C unless --duration " +
      "is given, then drains, prints a summary and exits non-zero if any reading was lost.",
  )
  .option("count", { alias: "n", type: "number", demandOption: true, describe: "number of boards" })
  .option("rate", { type: "number", default: 1, describe: "readings per second per board" })
  .option("duration", { type: "number", describe: "seconds to sample (default: until Ctrl-C)" })
  .option("broker", {
    type: "string",
    describe:
      "mqtts://host:port of an external broker (default: embedded); several, comma-separated, for a cluster: boards spread over them and fail over",
  })
  .option("encrypt", {
    type: "boolean",
    describe:
      "seal readings in the AES-256-GCM envelope (per-device keys from the fleet payload secret); default: the fleet settings' payloadMode, else no",
  })
  .option("settings", {
    type: "string",
    describe: "fleet settings file (default $EST_FLEET_SETTINGS): the payload mode, shared with the ingest",
  })
  .option("id-prefix", {
    type: "string",
    default: "emu-",
    describe: "device ids are <prefix>0001, <prefix>0002, … (dev-: the dev manifest's dev-0001..dev-0003)",
  })
  .option("mint-into-ca", {
    type: "string",
    describe:
      "with --broker: the state folder whose CA (pki/) the emulated boards' identities are minted into. " +
      "Required there, so no emu-* identity lands in a production CA by accident; their readings are stored tagged emulated=true",
  })
  .option("key-id", { type: "number", default: 1, describe: "payload secret key id used with --encrypt" })
  .option("scenario", { type: "string", describe: "fault scenario file (JSON or YAML)" })
  .option("random-faults", {
    type: "number",
    default: 0,
    describe: "random faults per minute across the fleet (drawn from --seed)",
  })
  .option("seed", {
    type: "string",
    default: "1",
    describe: "seed for physics, load profiles and faults: same seed, same readings",
  })
  .option("connect-rate", {
    type: "number",
    default: 500,
    describe: "new connections per second (reconnects included)",
  })
  .option("max-pending-connects", {
    type: "number",
    default: 256,
    describe: "connections in progress at once (TLS handshakes the broker has not finished)",
  })
  .option("workers", {
    type: "number",
    describe:
      "worker threads running the boards (default: one per core from 1,000 boards, otherwise 1, this thread)",
  })
  .option("report", { type: "string", describe: "write the summary (and fault log) as JSON here" })
  .option("verify", {
    type: "boolean",
    default: true,
    describe: "run the verifying subscriber, a read-only identity (--no-verify to skip)",
  })
  .option("key-type", {
    choices: ["rsa-2048", "p256"] as const,
    default: "rsa-2048" as const,
    describe: "key type for newly issued device certificates",
  })
  .option("boot", {
    type: "number",
    describe: "boot number for this run (default: next from the state folder)",
  })
  .option("store-url", {
    type: "string",
    describe:
      "write the emulator's own figures (measurement `bench`) to this InfluxDB v2 / VictoriaMetrics URL; token from $EST_STORE_TOKEN",
  })
  .option("store-org", { type: "string", describe: "InfluxDB organisation for --store-url" })
  .option("store-bucket", { type: "string", describe: "InfluxDB bucket for --store-url" })
  .option("verify-identity", {
    alias: "ingest-identity",
    type: "string",
    default: "monitor",
    describe:
      "CN of the verifying subscriber's certificate (issued if missing); the broker's ACL must let it read the fleet. " +
      "Not the ingest's when a real ingest uses the broker: one identity has one session, so it would take over the ingest's",
  })
  .option("confirmations", {
    choices: ["on", "off", "auto"] as const,
    default: "auto" as const,
    describe:
      "end-to-end confirmations: boards keep each reading after its PUBACK until the ingest confirms the store holds it (on), " +
      "forget it on PUBACK (off), or wait for confirmations but fall back to PUBACK if none come (auto, the firmware's default)",
  })
  .option("confirm-timeout", {
    type: "number",
    default: 60,
    describe: "seconds a PUBACKed reading waits for its confirmation before it is sent again",
  })
  .option("flash", {
    choices: ["auto", "off", "memory", "file"] as const,
    describe:
      "each board's flash ring, where unconfirmed readings survive a power cut: in memory, in a file per board " +
      "(--flash-dir; kept across runs), none, or auto (the default: memory flash for the boards a power_cut fault targets)",
  })
  .option("flash-dir", {
    type: "string",
    describe:
      "folder of the boards' flash files (implies --flash file; default <state>/emulator/flash with --flash file)",
  })
  .option("flash-sectors", {
    type: "number",
    default: 64,
    describe: "4 KiB sectors of flash per board (64: ~900 sealed readings)",
  })
  .check((a) => {
    if (a["flash-dir"] !== undefined && a.flash !== undefined && a.flash !== "file")
      throw new Error("--flash-dir needs --flash file (or no --flash)");
    if (!(Number.isInteger(a["flash-sectors"]) && a["flash-sectors"] >= 2 && a["flash-sectors"] <= 4096))
      throw new Error("--flash-sectors must be an integer from 2 to 4096");
    if (!(a["confirm-timeout"] >= 1)) throw new Error("--confirm-timeout must be at least 1 s");
    if (!Number.isInteger(a.count) || a.count < 1) throw new Error("--count must be a positive integer");
    if (!(a.rate > 0 && a.rate <= 100)) throw new Error("--rate must be in (0, 100]");
    if (a.duration !== undefined && !(a.duration > 0)) throw new Error("--duration must be positive");
    if (!(a["connect-rate"] > 0)) throw new Error("--connect-rate must be positive");
    if (a.broker && !a["mint-into-ca"])
      throw new Error(
        `--broker ${a.broker} is an external broker: emulating mints ${a.count} device identities into a CA. ` +
          "Say which with --mint-into-ca <state folder> (its pki/ holds the CA), or leave out --broker for the embedded one",
      );
    if (a["mint-into-ca"] && !a.broker) throw new Error("--mint-into-ca needs --broker");
    const idProblem = deviceIdProblem(`${a["id-prefix"]}${"9".repeat(Math.max(4, String(a.count).length))}`);
    if (idProblem) throw new Error(`--id-prefix "${a["id-prefix"]}" makes invalid device ids: ${idProblem}`);
    if (a.workers !== undefined && !(Number.isInteger(a.workers) && a.workers >= 1 && a.workers <= 64))
      throw new Error("--workers must be an integer from 1 to 64");
    return true;
  })
  .strict()
  .help()
  .fail((msg, err) => {
    console.error(`emulate: ${msg ?? err?.message ?? "invalid arguments"} (see --help)`);
    process.exit(2);
  })
  .parseAsync();

const state = argv["mint-into-ca"] ? resolve(argv["mint-into-ca"]) : stateDir();
const settingsPath = settingsPathFrom(argv.settings);
const encrypt =
  resolvePayloadMode(
    settingsPath ? await loadFleetSettings(settingsPath) : undefined,
    argv.encrypt === undefined ? undefined : argv.encrypt ? "encrypted" : "plain",
    argv.encrypt ? "--encrypt" : "--no-encrypt",
    "plain",
  ) === "encrypted";
const runId = new Date().toISOString().replace(/[:.]/g, "-");
const faultLogPath = join(state, "emulator", `faults-${runId}.jsonl`);
mkdirSync(join(state, "emulator"), { recursive: true });

const abort = new AbortController();
let interrupts = 0;
const onSignal = (): void => {
  interrupts++;
  if (interrupts === 1) {
    process.stderr.write("\nstopping (Ctrl-C again to quit at once)...\n");
    abort.abort();
  } else process.exit(130);
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

const view = new LiveView(process.stdout);
try {
  const summary = await runEmulator({
    count: argv.count,
    rateHz: argv.rate,
    ...(argv.duration !== undefined ? { durationS: argv.duration } : {}),
    ...(argv.broker ? { brokerUrl: argv.broker } : {}),
    encrypt,
    idPrefix: argv["id-prefix"],
    keyId: argv["key-id"],
    ...(argv.scenario ? { scenarioFile: resolve(argv.scenario) } : {}),
    randomFaultsPerMin: argv["random-faults"],
    seed: argv.seed,
    connectRate: argv["connect-rate"],
    maxPendingConnects: argv["max-pending-connects"],
    workers: argv.workers ?? defaultWorkers(argv.count),
    stateDir: state,
    verify: argv.verify,
    ...(argv.boot !== undefined ? { boot: argv.boot } : {}),
    deviceKeyType: argv["key-type"],
    verifyIdentity: argv["verify-identity"],
    confirmations: argv.confirmations,
    confirmTimeoutS: argv["confirm-timeout"],
    flash: {
      mode: argv["flash-dir"] !== undefined ? "file" : (argv.flash ?? "auto"),
      dir: argv["flash-dir"] !== undefined ? resolve(argv["flash-dir"]) : join(state, "emulator", "flash"),
      sectors: argv["flash-sectors"],
    },
    ...(argv["store-url"]
      ? {
          store: {
            url: argv["store-url"],
            ...(argv["store-org"] ? { org: argv["store-org"] } : {}),
            ...(argv["store-bucket"] ? { bucket: argv["store-bucket"] } : {}),
            ...(process.env.EST_STORE_TOKEN ? { token: process.env.EST_STORE_TOKEN } : {}),
          },
        }
      : {}),
    signal: abort.signal,
    onProgress: (line) => process.stderr.write(`${line}\n`),
    onLive: (s) => view.update(s),
    onSteady: (t) => view.note(`${STEADY_STATE_LINE} at t=${t.toFixed(0)}s`),
    onFault: (e) => appendFileSync(faultLogPath, JSON.stringify(e) + "\n"),
  });
  view.finish();
  for (const line of summaryLines(summary)) console.log(line);
  if (summary.faults.injected > 0) console.log(`  fault log: ${faultLogPath}`);
  if (argv.report) {
    await writeReport(resolve(argv.report), summary);
    console.log(`  report: ${resolve(argv.report)}`);
  }
  process.exit(summary.ok ? 0 : 1);
} catch (err) {
  view.finish();
  console.error(`emulate: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
