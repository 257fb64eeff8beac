#!/usr/bin/env node
// `npm run pki -- <command>`: the fleet's private CA. Every command works on <state>/pki (EST_STATE_DIR or
// --state-dir) and exits non-zero with one error line on bad input, leaving existing state untouched.
import { resolve } from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { stateDir as defaultStateDir } from "../../shared/state-dir";
import { loadManifest, ManifestError } from "../../manifests/src/manifest";
import { generateDeviceIds } from "../../manifests/src/device-id";
import { createCa } from "./ca";
import { refreshCrl, refreshCrlIfDue } from "./dev";
import { PkiError } from "./errors";
import {
  checkDeviceIds,
  issueBroker,
  issueDevices,
  issueService,
  revokeDevice,
  revokeIdentity,
  revokeSerial,
  rotateDevice,
  DEFAULT_BROKER_HOSTS,
} from "./identities";
import { exportDeviceBundle, writeDeviceBundle } from "./bundle";
import { renewIssuingCa } from "./issuing-renewal";
import { brokerPins, ensureNextBrokerKey, rotateBrokerKey } from "./broker-key";
import { inspect, listIdentities } from "./inventory";
import { KEY_TYPES, isKeyType } from "./keys";
import { REVOCATION_REASONS, type IdentityKind } from "./database";
import { pkiPaths, type KeyType } from "./paths";
import type { Progress } from "./keygen";

interface Common {
  stateDir: string;
}

const out = (line: string): void => void process.stdout.write(`${line}\n`);
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");

/** A progress line on stderr: rewritten in place on a terminal, every 10 % otherwise (CI logs). */
function progress(label: string): Progress {
  const started = Date.now();
  let lastDecile = -1;
  return (done, total) => {
    const elapsed = ((Date.now() - started) / 1000).toFixed(1);
    if (process.stderr.isTTY) {
      process.stderr.write(`\r${label} ${done}/${total} (${elapsed} s)${done === total ? "\n" : ""}`);
    } else {
      const decile = Math.floor((done * 10) / Math.max(total, 1));
      if (decile !== lastDecile) {
        lastDecile = decile;
        process.stderr.write(`${label} ${done}/${total} (${elapsed} s)\n`);
      }
    }
  };
}

function keyTypeArg(v: unknown): KeyType | undefined {
  if (v === undefined) return undefined;
  const s = String(v);
  if (!isKeyType(s))
    throw new PkiError("bad_input", `unknown key type "${s}" (use ${KEY_TYPES.join(" or ")})`);
  return s;
}

function positiveDays(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new PkiError("bad_input", `--days must be a positive number, got "${String(v)}"`);
  return n;
}

async function devicesCommand(
  a: Common & {
    manifest?: string;
    count?: number;
    prefix: string;
    keyType?: string;
    days?: number;
    force: boolean;
  },
): Promise<void> {
  if ((a.manifest === undefined) === (a.count === undefined))
    throw new PkiError("bad_input", "give either --manifest FILE or --count N");
  const override = keyTypeArg(a.keyType);
  let wanted: { id: string; keyType: KeyType }[];
  if (a.manifest !== undefined) {
    const m = await loadManifest(a.manifest);
    wanted = m.devices.map((d) => ({ id: d.id, keyType: override ?? d.keyType }));
  } else {
    const count = Number(a.count);
    if (!Number.isInteger(count) || count < 1 || count > 100_000)
      throw new PkiError(
        "bad_input",
        `--count must be an integer from 1 to 100000, got "${String(a.count)}"`,
      );
    let ids: string[];
    try {
      ids = generateDeviceIds(a.prefix, count);
    } catch (err) {
      throw new PkiError("invalid_id", err instanceof Error ? err.message : String(err));
    }
    wanted = ids.map((id) => ({ id, keyType: override ?? "rsa-2048" }));
  }
  checkDeviceIds(wanted.map((w) => w.id));
  const days = positiveDays(a.days);
  let issued = 0;
  let skipped = 0;
  for (const keyType of KEY_TYPES) {
    const ids = wanted.filter((w) => w.keyType === keyType).map((w) => w.id);
    if (ids.length === 0) continue;
    const started = Date.now();
    const r = await issueDevices({
      stateDir: a.stateDir,
      ids,
      keyType,
      days,
      force: a.force,
      onProgress: progress(`pki: ${keyType} devices`),
    });
    issued += r.issued.length;
    skipped += r.skipped.length;
    if (r.issued.length > 0)
      out(
        `pki: issued ${r.issued.length} ${keyType} device identities in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
  }
  if (skipped > 0)
    out(`pki: ${skipped} device(s) already had an identity and were kept (rotate <id> to replace one)`);
  out(`pki: ${issued} issued, ${skipped} kept; files under ${pkiPaths(a.stateDir).devicesDir}`);
}

export async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName("npm run pki --")
    .usage(
      "$0 <command> [options]\n\nThe fleet's private CA: root + issuing CA, broker, service and device identities, CRL.",
    )
    .option("state-dir", {
      type: "string",
      global: true,
      default: defaultStateDir(),
      describe: "state folder (EST_STATE_DIR)",
      coerce: (p: string) => resolve(p),
    })
    .command(
      "init",
      "create the root and issuing CA (and an empty CRL)",
      (y) =>
        y
          .option("force", {
            type: "boolean",
            default: false,
            describe: "replace an existing CA (every issued certificate becomes untrusted)",
          })
          .option("root-days", { type: "number", describe: "root CA validity in days (default 7300)" })
          .option("issuing-days", { type: "number", describe: "issuing CA validity in days (default 1825)" }),
      async (a) => {
        const p = await createCa(a.stateDir, {
          force: a.force,
          rootDays: positiveDays(a.rootDays),
          issuingDays: positiveDays(a.issuingDays),
        });
        out(
          `pki: CA created; trust ${p.caBundle}; CRL ${p.crl}; CA keys in ${p.caPrivateDir} (never mount this folder)`,
        );
      },
    )
    .command(
      "issuing-ca",
      "renew the issuing CA under the same root (needs the root key; boards keep trusting root.der)",
      (y) =>
        y
          .option("renew", {
            type: "boolean",
            demandOption: true,
            describe:
              "make a new issuing CA signed by the root; the old one stays trusted, with its own CRL, until it expires",
          })
          .option("days", {
            type: "number",
            describe: "validity of the new issuing CA in days (default 1825)",
          })
          .option("broker", {
            type: "boolean",
            default: true,
            describe:
              "re-issue the broker certificate from the new CA on its current key (--no-broker: later)",
          }),
      async (a) => {
        if (!a.renew) throw new PkiError("bad_input", "nothing to do: give --renew");
        process.stderr.write("pki: generating the new issuing CA key (RSA-2048)\n");
        const r = await renewIssuingCa({
          stateDir: a.stateDir,
          days: positiveDays(a.days),
          reissueBroker: a.broker,
        });
        const p = pkiPaths(a.stateDir);
        out(
          `pki: issuing CA renewed: ${r.current.name} (${r.current.serial}, until ${r.current.notAfter.toISOString()}) replaces ${r.previous.name} (${r.previous.serial})`,
        );
        out(
          `pki: ${r.stillValidFromPrevious} certificate(s) of the previous CA stay valid until they expire (at the latest ${r.previous.notAfter.toISOString()}) or are re-issued; both CAs are in ${p.caBundle} and have a CRL in ${p.crl}`,
        );
        out(
          r.broker
            ? `pki: broker certificate re-issued from the new CA on the same key (${r.broker.serial}); restart the broker to serve it (npm run broker -- restart)`
            : "pki: broker certificate not re-issued (--no-broker)",
        );
      },
    )
    .command(
      "broker",
      "issue the broker's server certificate (RSA-2048, serverAuth, SANs)",
      (y) =>
        y
          .option("host", {
            type: "string",
            array: true,
            default: [...DEFAULT_BROKER_HOSTS],
            describe: "DNS name or IP the broker is reached at (repeat)",
          })
          .option("days", { type: "number", describe: "validity in days (default 825)" })
          .option("force", {
            type: "boolean",
            default: false,
            describe: "replace the existing broker key and certificate (with --next: the next key)",
          })
          .option("next", {
            type: "boolean",
            describe:
              "only make the broker's next key ahead of time (its pin goes to boards at provisioning)",
          })
          .option("rotate", {
            type: "boolean",
            describe: "move the broker to its next key (new certificate, same names) and make a new next key",
          })
          .conflicts("next", "rotate"),
      async (a) => {
        const hostGiven = process.argv.some((arg) => arg === "--host" || arg.startsWith("--host="));
        if (a.next) {
          const r = await ensureNextBrokerKey(a.stateDir, { force: a.force });
          out(
            `pki: ${r.created ? "made" : "kept"} the next broker key, pin-sha256 ${b64(r.pin)}${r.created && a.force ? " (boards provisioned with the old next pin must be re-provisioned before a rotation)" : ""}`,
          );
          return;
        }
        if (a.rotate) {
          const r = await rotateBrokerKey({
            stateDir: a.stateDir,
            hosts: hostGiven ? a.host.map(String) : undefined,
            days: positiveDays(a.days),
          });
          out(
            `pki: broker certificate ${r.serial} for the former next key, valid until ${r.notAfter.toISOString()}: ${r.paths.cert}`,
          );
          out(
            `pki: pins now current ${b64(r.pins.current)}, next ${r.pins.next ? b64(r.pins.next) : "none"}`,
          );
          out(
            "pki: restart the broker to serve the new key (npm run broker -- restart); boards provisioned with the old next pin accept it",
          );
          return;
        }
        const r = await issueBroker({
          stateDir: a.stateDir,
          hosts: a.host.map(String),
          days: positiveDays(a.days),
          force: a.force,
        });
        const next = await ensureNextBrokerKey(a.stateDir);
        out(
          `pki: broker certificate ${r.serial} for ${a.host.join(", ")} valid until ${r.notAfter.toISOString()}: ${r.paths.cert}`,
        );
        out(
          `pki: next broker key pin-sha256 ${b64(next.pin)} (provisioned with the current pin, so the key can rotate later)`,
        );
      },
    )
    .command(
      "service <name>",
      "issue a service identity (clientAuth), e.g. ingest or bridge",
      (y) =>
        y
          .positional("name", {
            type: "string",
            demandOption: true,
            describe: "service name (its certificate CN and broker user)",
          })
          .option("key-type", {
            type: "string",
            choices: [...KEY_TYPES],
            default: "p256",
            describe: "key type",
          })
          .option("days", { type: "number", describe: "validity in days (default 825)" })
          .option("force", {
            type: "boolean",
            default: false,
            describe: "replace the existing key and certificate",
          }),
      async (a) => {
        const r = await issueService({
          stateDir: a.stateDir,
          name: String(a.name),
          keyType: keyTypeArg(a.keyType),
          days: positiveDays(a.days),
          force: a.force,
        });
        out(
          `pki: service "${r.name}" certificate ${r.serial} valid until ${r.notAfter.toISOString()}: ${r.paths.cert}`,
        );
      },
    )
    .command(
      "devices",
      "issue device identities for a manifest or N generated ids (existing ones are kept)",
      (y) =>
        y
          .option("manifest", {
            type: "string",
            describe: "fleet manifest (JSON or YAML), e.g. manifests/fleet.example.json",
          })
          .option("count", { type: "number", describe: "generate ids <prefix>0001 … <prefix>N" })
          .option("prefix", { type: "string", default: "dev-", describe: "id prefix for --count" })
          .option("key-type", {
            type: "string",
            choices: [...KEY_TYPES],
            describe: "override the manifest's key type (default rsa-2048)",
          })
          .option("days", { type: "number", describe: "validity in days (default 1095)" })
          .option("force", {
            type: "boolean",
            default: false,
            describe: "replace existing device keys (old certificates stay valid until revoked)",
          })
          .example("$0 devices --manifest manifests/fleet.dev.json", "the default dev fleet")
          .example("$0 devices --count 1000 --key-type p256", "1000 emulated devices"),
      (a) => devicesCommand(a),
    )
    .command(
      "list",
      "list issued certificates with their status",
      (y) =>
        y
          .option("kind", {
            type: "string",
            choices: ["root", "issuing", "broker", "service", "device"],
            describe: "only this kind",
          })
          .option("all", {
            type: "boolean",
            default: false,
            describe: "include superseded (rotated) certificates",
          })
          .option("json", { type: "boolean", default: false, describe: "JSON output" }),
      async (a) => {
        const rows = await listIdentities(a.stateDir, {
          kind: a.kind as IdentityKind | undefined,
          all: a.all,
        });
        if (a.json) return out(JSON.stringify(rows, null, 2));
        out(["KIND", "NAME", "KEY", "SERIAL", "NOT AFTER", "STATUS"].join("\t"));
        for (const r of rows)
          out([r.kind, r.name, r.keyType, r.serial, r.notAfter.slice(0, 10), r.status].join("\t"));
      },
    )
    .command(
      "inspect <target>",
      "show a certificate: a device id, root, issuing, broker, service:<name> or a file",
      (y) =>
        y
          .positional("target", { type: "string", demandOption: true })
          .option("json", { type: "boolean", default: false, describe: "JSON output" }),
      async (a) => {
        const s = await inspect(a.stateDir, String(a.target));
        if (a.json) return out(JSON.stringify(s, null, 2));
        for (const [k, v] of Object.entries(s))
          out(`${k.padEnd(18)} ${Array.isArray(v) ? v.join(", ") : String(v)}`);
      },
    )
    .command(
      "revoke [target]",
      "revoke every certificate of a device, service:<name> or broker, or one --serial, and re-sign the CRLs (a running `npm run broker` cuts the board off)",
      (y) =>
        y
          .positional("target", { type: "string", describe: "device id, service:<name> or broker" })
          .option("serial", {
            type: "string",
            describe: "revoke only the certificate with this serial (hex)",
          })
          .option("reason", { type: "string", choices: [...REVOCATION_REASONS], default: "unspecified" })
          .example("$0 revoke dev-0001", "every certificate dev-0001 ever had")
          .example("$0 revoke --serial 5a3f…", "one certificate, e.g. a board's replaced one"),
      async (a) => {
        const target = a.target === undefined ? undefined : String(a.target);
        if ((target === undefined) === (a.serial === undefined))
          throw new PkiError(
            "bad_input",
            "give either a target (device id, service:<name>, broker) or --serial S",
          );
        const crl = pkiPaths(a.stateDir).crl;
        if (a.serial !== undefined) {
          const r = await revokeSerial(a.stateDir, String(a.serial), a.reason);
          return out(`pki: ${r.kind} "${r.name}" certificate ${r.serial} revoked; CRL updated: ${crl}`);
        }
        const t = target as string;
        const serials =
          t === "broker"
            ? await revokeIdentity(a.stateDir, { kind: "broker" }, a.reason)
            : t.startsWith("service:")
              ? await revokeIdentity(a.stateDir, { kind: "service", name: t.slice(8) }, a.reason)
              : await revokeDevice(a.stateDir, t, a.reason);
        out(
          `pki: ${t} revoked (${serials.length} certificate(s): ${serials.join(", ")}); CRL updated: ${crl}`,
        );
      },
    )
    .command(
      "rotate <id>",
      "give a device a new key and certificate (old files go to devices/<id>/archive/)",
      (y) =>
        y
          .positional("id", { type: "string", demandOption: true })
          .option("key-type", {
            type: "string",
            choices: [...KEY_TYPES],
            describe: "default: the device's current key type",
          })
          .option("days", { type: "number", describe: "validity in days (default 1095)" })
          .option("revoke-old", {
            type: "boolean",
            default: false,
            describe: "also revoke the previous certificate (superseded)",
          }),
      async (a) => {
        const r = await rotateDevice({
          stateDir: a.stateDir,
          id: String(a.id),
          keyType: keyTypeArg(a.keyType),
          days: positiveDays(a.days),
          revokeOld: a.revokeOld,
        });
        out(
          `pki: device "${r.name}" has certificate ${r.serial} valid until ${r.notAfter.toISOString()}${a.revokeOld ? "; the old one is revoked" : ""}`,
        );
      },
    )
    .command(
      "export <id>",
      "write a device bundle (DER + PEM identity, CA certificates) for provisioning",
      (y) =>
        y
          .positional("id", { type: "string", demandOption: true })
          .option("out", {
            type: "string",
            demandOption: true,
            describe: "folder; the bundle goes to <out>/<id>/",
          })
          .option("force", { type: "boolean", default: false, describe: "overwrite an existing bundle" }),
      async (a) => {
        const bundle = await exportDeviceBundle(a.stateDir, String(a.id));
        const dir = await writeDeviceBundle(bundle, resolve(a.out), a.force);
        out(
          `pki: bundle for "${bundle.deviceId}" (certificate ${bundle.serial}, valid until ${bundle.notAfter.toISOString()}) in ${dir}`,
        );
      },
    )
    .command(
      "pins",
      "print the broker's key pins (pin-sha256, base64) that provisioning writes into every board",
      (y) => y,
      async (a) => {
        const p = await brokerPins(a.stateDir);
        out(`current ${b64(p.current)}`);
        out(`next    ${p.next ? b64(p.next) : "none (npm run pki -- broker --next)"}`);
      },
    )
    .command(
      "crl",
      "re-sign the CRLs (they expire; `npm run broker` and `npm run stack` do it themselves)",
      (y) =>
        y.option("if-due", {
          type: "boolean",
          default: false,
          describe: "only when a third of their lifetime is left (for a timer; prints whether it re-signed)",
        }),
      async (a) => {
        if (a.ifDue) {
          const did = await refreshCrlIfDue(a.stateDir);
          out(did ? `pki: CRL re-signed: ${pkiPaths(a.stateDir).crl}` : "pki: CRL not due");
          return;
        }
        const p = await refreshCrl(a.stateDir);
        out(`pki: CRL re-signed: ${p.crl}`);
      },
    )
    .demandCommand(1, "give a command (see --help)")
    .strict()
    .help()
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((msg, err, y) => {
      if (err) throw err;
      void y;
      process.stderr.write(`pki: ${String(msg).replace(/\s*\n\s*/g, " ")} (see --help)\n`);
      process.exit(2);
    })
    .parseAsync();
}

try {
  await main(hideBin(process.argv));
} catch (err) {
  if (err instanceof PkiError || err instanceof ManifestError) {
    process.stderr.write(`pki: ${err.message}\n`);
    // One line by default; the full list of manifest problems on request.
    if (err instanceof ManifestError && process.env.EST_DEBUG)
      process.stderr.write(`${err.errors.join("\n")}\n`);
    process.exit(1);
  }
  process.stderr.write(`pki: unexpected error: ${err instanceof Error ? err.message : String(err)}\n`);
  if (process.env.EST_DEBUG) console.error(err);
  process.exit(1);
}
