#!/usr/bin/env node
// `npm run provision -- <port>`: writes a board's identity into its NVS over serial, verified, and records
// which chip holds it. Also `image` (NVS image from ESP-IDF's CSV), `inspect` (decode an image) and `sim`
// (the same identity into the Moddable Linux simulator's Preference file).
import { existsSync, readFileSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { PROV_KEY_LIST, PROV_NAMESPACE } from "../../../firmware/src/identity/nvs-layout";
import { csvToItems } from "../nvs/csv";
import { NvsError } from "../nvs/format";
import { readNvsImage, type NvsValue } from "../nvs/reader";
import { buildNvsImage } from "../nvs/writer";
import { ProvisionError } from "../provision/errors";
import { listEspPorts } from "../provision/ports";
import { provisionBoard, type ProvisionRequest, type ProvisionResult } from "../provision/provision-board";
import { loadIdentity, requireFleetSecret, type KeyGeneration } from "../provision/identity";
import { commitGrant, reserveGeneration, updateGrants } from "../crypto/payload-grants";
import type { IdentitySettings } from "../provision/identity";
import { initialBootCounter } from "../provision/nvs-image";
import {
  SIMULATOR_PREFERENCES,
  readPreferenceFile,
  simulatorBoot,
  withIdentity,
} from "../provision/simulator-preferences";
import { repoRoot, stateDir } from "../../../shared/state-dir";
import {
  loadFleetSettings,
  resolveManifest,
  resolvePayloadMode,
  settingsPathFrom,
} from "../settings/fleet-settings";

interface FlashArgs {
  port?: string;
  ports?: string;
  device?: string;
  /** A path, or false for --no-manifest. */
  manifest?: string | false;
  baud: number;
  /** The first is the board's home; the others are its failover list (NVS key `brokers`). */
  broker?: string[];
  interval: number;
  site?: string;
  keyId: number;
  /** undefined: not given (the fleet settings decide, else true). */
  encrypt?: boolean;
  settings?: string;
  wifiSsid?: string;
  wifiPskFile?: string;
  force: boolean;
  dryRun: boolean;
  verify: boolean;
  nvsOffset?: string;
  nvsSize?: string;
  connectAttempts: number;
  verbose: boolean;
}

function parseSize(text: string, what: string): number {
  const n = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new ProvisionError("bad_input", `${what} "${text}" is not a number (decimal or 0x hex)`);
  return n;
}

async function flash(a: FlashArgs): Promise<void> {
  if (!a.port && !a.ports)
    throw new ProvisionError("bad_input", "give a serial port (e.g. /dev/ttyUSB0) or --ports auto");
  if (a.port && a.ports)
    throw new ProvisionError("bad_input", "give either a port or --ports auto, not both");
  if (a.ports && a.ports !== "auto") throw new ProvisionError("bad_input", `--ports takes only "auto"`);
  if (a.ports && a.device)
    throw new ProvisionError(
      "bad_input",
      "--device names one identity; it cannot go to every attached board",
    );
  if (!a.broker || a.broker.length === 0)
    throw new ProvisionError(
      "bad_input",
      "--broker mqtts://host:port is required: the address the boards connect to",
    );
  if (a.wifiPskFile !== undefined && a.wifiSsid === undefined)
    throw new ProvisionError("bad_input", "--wifi-psk-file needs --wifi-ssid");
  if ((a.nvsOffset === undefined) !== (a.nvsSize === undefined))
    throw new ProvisionError("bad_input", "give both --nvs-offset and --nvs-size, or neither");

  // The fleet settings, when there are any, decide payload mode and manifest; a flag may only repeat them.
  const settingsPath = settingsPathFrom(a.settings);
  const fleet = settingsPath ? await loadFleetSettings(settingsPath) : undefined;
  const encrypt =
    resolvePayloadMode(
      fleet,
      a.encrypt === undefined ? undefined : a.encrypt ? "encrypted" : "plain",
      a.encrypt === false ? "--no-encrypt" : "--encrypt",
      "encrypted",
    ) === "encrypted";
  if (fleet && a.manifest === false)
    throw new ProvisionError("bad_input", `--no-manifest contradicts the fleet settings ${fleet.source}`);
  const manifestPath =
    a.manifest === false ? undefined : (resolveManifest(fleet, a.manifest) ?? defaultManifest());
  if (manifestPath !== undefined)
    console.log(
      `fleet manifest ${manifestPath}${a.site !== undefined ? " (its sites take precedence over --site)" : ""}`,
    );

  const settings: IdentitySettings = {
    broker: a.broker[0]!,
    ...(a.broker.length > 1 ? { failover: a.broker.slice(1) } : {}),
    intervalMs: a.interval,
    keyId: encrypt ? a.keyId : null,
  };
  if (a.site !== undefined) settings.site = a.site;
  if (a.wifiSsid !== undefined) {
    // The passphrase comes from a file so it never shows in the shell history or the process list.
    settings.wifi =
      a.wifiPskFile === undefined
        ? { ssid: a.wifiSsid }
        : { ssid: a.wifiSsid, psk: await readSecretLine(a.wifiPskFile) };
  }
  const base = {
    stateDir: stateDir(),
    baud: a.baud,
    settings,
    force: a.force,
    dryRun: a.dryRun,
    verify: a.verify,
    connectAttempts: a.connectAttempts,
    ...(manifestPath !== undefined ? { manifestPath } : {}),
    ...(a.nvsOffset !== undefined && a.nvsSize !== undefined
      ? { nvs: { offset: parseSize(a.nvsOffset, "--nvs-offset"), size: parseSize(a.nvsSize, "--nvs-size") } }
      : {}),
  };

  // Checked once before any board is touched: with --ports auto every board would fail the same way.
  if (settings.keyId !== null) await requireFleetSecret(base.stateDir, settings.keyId);

  const targets: { path: string; vid?: number; pid?: number }[] = [];
  if (a.ports) {
    const found = await listEspPorts();
    if (found.length === 0)
      throw new ProvisionError(
        "no_port",
        "no ESP32 USB-UART bridge attached (looked for CP210x, CH340, CH9102, FTDI, Espressif USB-JTAG)",
      );
    for (const p of found) {
      console.log(`found ${p.path} (${p.bridge})`);
      targets.push({ path: p.path, vid: p.vid, pid: p.pid });
    }
  } else targets.push({ path: a.port! });

  const results = await Promise.allSettled(
    targets.map((t) => {
      const tag = targets.length > 1 ? `[${basename(t.path)}] ` : "";
      const req: ProvisionRequest = {
        ...base,
        path: t.path,
        progress: (line) => console.log(`${tag}${line}`),
        ...(a.verbose ? { debug: (line: string) => console.log(`${tag}  esptool: ${line}`) } : {}),
        ...(a.device !== undefined ? { deviceId: a.device } : {}),
        ...(t.vid !== undefined ? { usbVendorId: t.vid } : {}),
        ...(t.pid !== undefined ? { usbProductId: t.pid } : {}),
      };
      return provisionBoard(req);
    }),
  );
  let failed = 0;
  results.forEach((r, i) => {
    const path = targets[i]!.path;
    if (r.status === "fulfilled") console.log(summary(path, r.value));
    else {
      failed++;
      console.error(`provision: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`);
    }
  });
  if (failed > 0) process.exitCode = 1;
}

/** `manifests/fleet.json` when the fleet keeps one there; otherwise provisioning works from the PKI alone. */
function defaultManifest(): string | undefined {
  const path = join(repoRoot(), "manifests", "fleet.json");
  return existsSync(path) ? path : undefined;
}

function summary(path: string, r: ProvisionResult): string {
  const what = r.written ? (r.verified ? "provisioned and verified" : "provisioned") : "dry run ok";
  return (
    `${path}: ${what}: ${r.deviceId} on ${r.mac} (${r.chip}), NVS 0x${r.nvsOffset.toString(16)}+0x${r.nvsSize.toString(16)}, ` +
    `${r.usedBytes} bytes used, boot ${r.boot}, cert ${r.certSerial}, ${(r.timings.totalMs / 1000).toFixed(2)} s`
  );
}

async function readSecretLine(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new ProvisionError(
      "bad_input",
      `cannot read --wifi-psk-file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const line = text.replace(/\r?\n$/, "");
  if (line.includes("\n"))
    throw new ProvisionError(
      "bad_input",
      `--wifi-psk-file ${path} must hold the passphrase on a single line`,
    );
  return line;
}

async function image(a: { csv: string; size: string; out: string }): Promise<void> {
  const size = parseSize(a.size, "--size");
  let text: string;
  try {
    text = await readFile(a.csv, "utf8");
  } catch (err) {
    throw new ProvisionError(
      "bad_input",
      `cannot read ${a.csv}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  // nvs_partition_gen.py resolves `file` rows against the working directory; fall back to the CSV's folder.
  const readRef = (p: string): Uint8Array => {
    const candidates = isAbsolute(p) ? [p] : [resolve(p), resolve(dirname(a.csv), p)];
    let lastError: unknown;
    for (const c of candidates) {
      try {
        return readFileSync(c);
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  };
  const bytes = buildNvsImage(csvToItems(text, readRef), size);
  await writeFile(a.out, bytes, { mode: 0o600 });
  const decoded = readNvsImage(bytes);
  const used = decoded.pages.reduce((n, p) => n + p.usedEntries, 0);
  console.log(
    `wrote ${a.out}: ${bytes.length} bytes, ${used} of ${decoded.pages.length * 126} entries used, last page kept free`,
  );
}

async function simulator(a: {
  device: string;
  broker: string[];
  interval: number;
  encrypt: boolean;
  keyId: number;
  site?: string;
  out: string;
}): Promise<void> {
  if (a.broker.length === 0) throw new ProvisionError("bad_input", "--broker mqtts://host:port is required");
  const settings: IdentitySettings = {
    broker: a.broker[0]!,
    ...(a.broker.length > 1 ? { failover: a.broker.slice(1) } : {}),
    intervalMs: a.interval,
    keyId: a.encrypt ? a.keyId : null,
  };
  if (a.site !== undefined) settings.site = a.site;
  const file = await readPreferenceFile(a.out);
  // A new payload key generation, granted at once: the simulator's file is written right after.
  const prior = file[PROV_NAMESPACE];
  const legacyKeyId =
    prior?.device_id === a.device && typeof prior.key_id === "number" ? prior.key_id : undefined;
  const generation =
    settings.keyId === null ? undefined : await grantSimulatorKey(a.device, settings.keyId, legacyKeyId);
  const { identity, cert } = await loadIdentity(stateDir(), a.device, settings, generation);
  // Carried forward like a board's NVS counter: a lower boot would reuse envelope nonces under the same key.
  const boot = initialBootCounter(simulatorBoot(file), new Date());
  const tmp = `${a.out}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(withIdentity(file, identity, boot)), { mode: 0o600 });
  await rename(tmp, a.out);
  console.log(
    `wrote ${a.out}: ${identity.deviceId} (cert ${cert.serial}), ${a.broker.join(" then ")}, every ${a.interval} ms, ` +
      `${identity.payload ? `encrypted (key ${identity.payload.keyId})` : "plaintext"}, ${identity.tls!.brokerPins.length} broker pin(s), boot ${boot}`,
  );
}

/** Reserves and grants one generation (the simulator is one board: its previous key keeps the grace period). */
async function grantSimulatorKey(
  deviceId: string,
  secretId: number,
  legacyKeyId: number | undefined,
): Promise<KeyGeneration> {
  await requireFleetSecret(stateDir(), secretId);
  return updateGrants(stateDir(), (f) => {
    const g = reserveGeneration(f, deviceId, legacyKeyId !== undefined ? [legacyKeyId] : []);
    const file = commitGrant(g.file, deviceId, {
      secretId,
      generation: g.generation,
      now: new Date(),
      movedFromAnotherBoard: false,
      ...(legacyKeyId !== undefined ? { legacyKeyId } : {}),
    });
    return { file, result: { generation: g.generation, keyId: g.keyId } };
  });
}

const SECRET_KEYS = new Set(PROV_KEY_LIST.filter((k) => k.secret).map((k) => k.key));

async function inspect(a: { file: string }): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(a.file));
  } catch (err) {
    throw new ProvisionError(
      "bad_input",
      `cannot read ${a.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const d = readNvsImage(bytes);
  const states = d.pages.map((p) => p.state).join(", ");
  console.log(
    `${a.file}: ${d.pages.length} pages (${states}); spare page ${d.hasSparePage ? "present" : "MISSING: nvs_flash_init would fail"}`,
  );
  for (const [ns, entries] of d.namespaces) {
    console.log(`namespace ${ns}`);
    for (const [key, v] of entries) console.log(`  ${key.padEnd(15)} ${v.type.padEnd(6)} ${show(key, v)}`);
  }
  for (const p of d.problems) console.log(`problem: ${p}`);
  if (d.problems.length > 0) process.exitCode = 1;
}

/** Secrets (keys, passphrases) show only their size: an image dump must be safe to paste into a ticket. */
function show(key: string, v: NvsValue): string {
  if (SECRET_KEYS.has(key)) {
    return v.type === "blob" ? `<secret, ${v.value.length} bytes>` : "<secret>";
  }
  if (v.type === "blob") return `${v.value.length} bytes`;
  if (v.type === "string") return JSON.stringify(v.value);
  return String(v.value);
}

await yargs(hideBin(process.argv))
  .scriptName("npm run provision --")
  .usage(
    "$0 <port> [options]\n\nWrites a board's identity (certificate, key, CA, payload key, settings) into its ESP32 NVS over serial, " +
      "checks it, resets the board and records which chip (MAC) holds which identity under the state folder and in the fleet manifest.",
  )
  .command(
    ["$0 [port]", "flash [port]"],
    "provision the board on <port> (e.g. /dev/ttyUSB0)",
    (y) =>
      y
        .positional("port", { type: "string", describe: "serial port of the board" })
        .option("ports", {
          type: "string",
          describe: '"auto": every attached ESP32 (by USB VID/PID), in parallel',
        })
        .option("device", {
          type: "string",
          describe:
            "identity to write (default: the board's bound identity, else the next unprovisioned one); must be in the manifest",
        })
        .option("manifest", {
          type: "string",
          describe:
            "fleet manifest (JSON/YAML): devices handed out in its order, their sites, bindings recorded on them " +
            "(default: manifests/fleet.json if it exists; --no-manifest: none)",
        })
        .option("baud", { type: "number", default: 921600, describe: "baud rate after the stub is running" })
        .option("broker", {
          type: "string",
          // Repeated, not `array: true`: an array option would also swallow the serial port after it.
          coerce: (v: string | string[]): string[] => (Array.isArray(v) ? v : [v]),
          describe:
            "broker URL the board connects to, mqtts://host:port (required); repeat it for a cluster: the first is the board's home, the others its failover list",
        })
        .option("interval", {
          type: "number",
          default: 5000,
          describe:
            "milliseconds between readings when there is no manifest (the manifest's intervalMs wins)",
        })
        .option("site", {
          type: "string",
          describe:
            "site label stored with the identity when there is no manifest (the manifest's site wins)",
        })
        .option("key-id", {
          type: "number",
          default: 1,
          describe: "payload key id (fleet secret under .state/secrets)",
        })
        .option("encrypt", {
          type: "boolean",
          describe:
            "seal payloads with the device key (default: the fleet settings' payloadMode, else yes; --no-encrypt: TLS only)",
        })
        .option("settings", {
          type: "string",
          describe:
            "fleet settings file (default $EST_FLEET_SETTINGS): payload mode and manifest, shared with the ingest",
        })
        .option("wifi-ssid", { type: "string", describe: "Wi-Fi network name" })
        .option("wifi-psk-file", {
          type: "string",
          describe: "file holding the Wi-Fi passphrase (never on the command line)",
        })
        .option("force", {
          type: "boolean",
          default: false,
          describe: "re-provision a bound board or move an identity to another board",
        })
        .option("dry-run", {
          type: "boolean",
          default: false,
          describe: "connect, check and build the image, but write nothing",
        })
        .option("verify", {
          type: "boolean",
          default: false,
          describe: "read the partition back and compare byte for byte",
        })
        .option("nvs-offset", {
          type: "string",
          describe: "NVS partition offset (default: from the board's partition table, else 0x9000)",
        })
        .option("nvs-size", {
          type: "string",
          describe: "NVS partition size (default: from the partition table, else 0x6000)",
        })
        .option("connect-attempts", {
          type: "number",
          default: 7,
          describe: "reset-and-sync attempts before giving up",
        })
        .option("verbose", { type: "boolean", default: false, describe: "show esptool-js's own log" }),
    (a) => flash(a as unknown as FlashArgs),
  )
  .command(
    "image",
    "build an NVS image from ESP-IDF's mass-manufacturing CSV (same bytes as nvs_partition_gen.py)",
    (y) =>
      y
        .option("csv", { type: "string", demandOption: true, describe: "CSV: key,type,encoding,value" })
        .option("size", { type: "string", default: "0x6000", describe: "partition size" })
        .option("out", { type: "string", demandOption: true, describe: "image file to write" }),
    (a) => image(a),
  )
  .command(
    "sim",
    "write an identity into the Moddable Linux simulator's Preference file instead of a board's NVS",
    (y) =>
      y
        .option("device", {
          type: "string",
          demandOption: true,
          describe: "identity to write (a device of the PKI)",
        })
        .option("broker", {
          type: "string",
          // Repeated, not `array: true`: an array option would also swallow the serial port after it.
          coerce: (v: string | string[]): string[] => (Array.isArray(v) ? v : [v]),
          demandOption: true,
          describe:
            "broker URL the simulated board connects to, mqtts://host:port; repeat it for a cluster (first: home)",
        })
        .option("interval", { type: "number", default: 5000, describe: "milliseconds between readings" })
        .option("site", { type: "string", describe: "site label stored with the identity" })
        .option("key-id", {
          type: "number",
          default: 1,
          describe: "payload key id (fleet secret under .state/secrets)",
        })
        .option("encrypt", {
          type: "boolean",
          default: true,
          describe: "seal payloads with the device key (--no-encrypt: TLS only)",
        })
        .option("out", {
          type: "string",
          default: SIMULATOR_PREFERENCES,
          describe: "the simulator's preference file (its other domains are kept)",
        }),
    (a) => simulator(a),
  )
  .command(
    "inspect <file>",
    "decode an NVS image (secrets shown as sizes)",
    (y) => y.positional("file", { type: "string", demandOption: true }),
    (a) => inspect({ file: a.file }),
  )
  .strict()
  .help()
  .fail((msg, err) => {
    if (err instanceof ProvisionError || err instanceof NvsError) console.error(`provision: ${err.message}`);
    else if (err) console.error(`provision: ${err.message}`);
    else console.error(`provision: ${msg}`);
    process.exit(1);
  })
  .parseAsync();
// esptool-js leaves polling timers behind after a failed board; the work is done, so leave now.
process.exit(process.exitCode ?? 0);
