#!/usr/bin/env node
// `npm run trust`: certificate, key and broker-pin rotation over the boards' downlink (README, Trust).
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadManifest } from "../../../manifests/src/index";
import { repoRoot, stateDir } from "../../../shared/state-dir";
import { connectFleetAdmin } from "../trust/fleet-admin-publisher";
import {
  certifyInField,
  finishInField,
  readTrustFile,
  requestKeyInField,
  rotateInField,
  type RotationReport,
  type RotationStep,
} from "../trust/field-rotation";

const say = (line: string): void => console.error(`trust: ${line}`);

/** The ids given, or every device of `--site` in the fleet manifest (default manifests/fleet.json). */
async function targets(a: {
  ids?: (string | number)[];
  site?: string;
  manifest?: string;
}): Promise<string[]> {
  const ids = (a.ids ?? []).map(String);
  if (a.site === undefined) {
    if (ids.length === 0) throw new Error("name the boards, or a site with --site");
    return ids;
  }
  if (ids.length) throw new Error("give either board ids or --site, not both");
  const path = a.manifest ? resolve(a.manifest) : join(repoRoot(), "manifests", "fleet.json");
  if (!existsSync(path)) throw new Error(`--site needs a fleet manifest: none at ${path} (--manifest F)`);
  const site = (await loadManifest(path)).devices.filter((d) => d.site === a.site).map((d) => d.id);
  if (site.length === 0) throw new Error(`no device of ${path} is at site "${a.site}"`);
  say(`site ${a.site}: ${site.length} board(s) from ${path}`);
  return site;
}

const siteOptions = {
  site: { type: "string", describe: "every board of this site in the fleet manifest, instead of ids" },
  manifest: { type: "string", describe: "fleet manifest for --site (default manifests/fleet.json)" },
} as const;

/** Runs `one` for every id with progress; the reports, one per id. */
async function eachBoard(
  ids: string[],
  brokerUrl: string,
  one: (
    id: string,
    onStep: (s: RotationStep, d: string) => void,
    publisher: Awaited<ReturnType<typeof connectFleetAdmin>>,
  ) => Promise<RotationReport>,
): Promise<RotationReport[]> {
  const publisher = await connectFleetAdmin({ stateDir: stateDir(), brokerUrl, onNotice: say });
  const reports: RotationReport[] = [];
  try {
    for (const [i, id] of ids.entries()) {
      const tag = `[${i + 1}/${ids.length}] ${id}`;
      try {
        reports.push(await one(id, (s, d) => say(`${tag}: ${s} ${d}`), publisher));
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        say(`${tag}: FAILED ${error}`);
        reports.push({ id, ok: false, error });
      }
    }
  } finally {
    await publisher.close();
  }
  return reports;
}

/** Prints the report and exits non-zero if any board failed. */
function report(reports: RotationReport[]): void {
  const failed = reports.filter((r) => !r.ok);
  console.log(JSON.stringify({ ok: failed.length === 0, reports }, null, 2));
  if (failed.length) {
    say(`${failed.length} of ${reports.length} failed`);
    process.exitCode = 1;
  }
}

await yargs(hideBin(process.argv))
  .scriptName("npm run trust --")
  .usage(
    "$0 <command>\n\nRotates boards' certificates, keys and broker pins over electrolyser/<id>/down/trust, as fleet-admin.",
  )
  .option("broker", {
    type: "string",
    default: "mqtts://localhost:8883",
    describe: "broker URL (the fleet-admin certificate is read from the PKI state)",
  })
  .command(
    "rotate [ids..]",
    "per board: ask it for a new key and CSR, certify it, send the certificate, the broker pins and a new payload key sealed under its payload key (QoS 1 retained); a pending rotation is resent as it was",
    (y) =>
      y
        .positional("ids", { type: "string", array: true })
        .options(siteOptions)
        .option("key-type", {
          type: "string",
          choices: ["rsa-2048", "p256"],
          describe: "default: the device's current key type (boards need rsa-2048)",
        })
        .option("days", {
          type: "number",
          describe: "validity in days (default 1095, clamped to the issuing CA)",
        })
        .option("key-id", {
          type: "number",
          default: 1,
          describe: "fleet secret for boards without payload grants",
        })
        .option("key-on-board", {
          type: "boolean",
          default: true,
          describe:
            "the board makes its key and sends a CSR (sealed, on electrolyser/<id>/csr); the host certifies it and never holds the key. Requests go to every board first, then each answer is awaited. --no-key-on-board: the host makes the key and sends it sealed under the board's payload key (for firmware without the key-request module; the PKI keeps a copy)",
        })
        .option("answer-wait", {
          type: "number",
          default: 120,
          describe: "seconds to wait per board for its CSR (the request stays retained)",
        }),
    async (a) => {
      if (a.keyOnBoard) {
        if (!(a.answerWait > 0)) throw new Error("--answer-wait takes a number of seconds > 0");
        const ids = await targets(a);
        const asked = new Set<string>();
        // Every board gets its request first, so their keys are made in parallel, then each answer is awaited.
        const first = await eachBoard(ids, a.broker, async (id, onStep, publisher) => {
          const r = await requestKeyInField({
            stateDir: stateDir(),
            id,
            publisher,
            fallbackKeyId: a.keyId,
            onStep,
          });
          if ("report" in r) return r.report;
          asked.add(id);
          return { id, ok: true, rotation: r.rotation };
        });
        const second = await eachBoard(
          ids.filter((id) => asked.has(id)),
          a.broker,
          (id, onStep, publisher) =>
            certifyInField({
              stateDir: stateDir(),
              id,
              publisher,
              days: a.days,
              fallbackKeyId: a.keyId,
              onStep,
              keyOnBoard: { answers: publisher, timeoutMs: a.answerWait * 1000 },
            }),
        );
        report([...first.filter((r) => !asked.has(r.id)), ...second]);
        return;
      }
      report(
        await eachBoard(await targets(a), a.broker, (id, onStep, publisher) =>
          rotateInField({
            stateDir: stateDir(),
            id,
            publisher,
            keyType: a.keyType as "rsa-2048" | "p256" | undefined,
            days: a.days,
            fallbackKeyId: a.keyId,
            onStep,
          }),
        ),
      );
    },
  )
  .command(
    "finish [ids..]",
    "after a board connected with its new certificate: clear the retained message, revoke its old certificate(s), make its new payload key current and retire the old one after --key-grace",
    (y) =>
      y
        .positional("ids", { type: "string", array: true })
        .options(siteOptions)
        .option("wait", {
          type: "number",
          describe:
            "first wait up to this many seconds per board for its status to show the new certificate (fail, revoking nothing, if it does not)",
        })
        .option("key-grace", {
          type: "number",
          describe:
            "seconds the replaced payload key still opens readings sealed before the switch (default 7 days; 0: retired at once)",
        }),
    async (a) => {
      if (a.wait !== undefined && !(a.wait > 0)) throw new Error("--wait takes a number of seconds > 0");
      if (a.keyGrace !== undefined && !(a.keyGrace >= 0))
        throw new Error("--key-grace takes a number of seconds >= 0");
      report(
        await eachBoard(await targets(a), a.broker, (id, onStep, publisher) =>
          finishInField({
            stateDir: stateDir(),
            id,
            publisher,
            onStep,
            ...(a.keyGrace !== undefined ? { keyGraceMs: a.keyGrace * 1000 } : {}),
            ...(a.wait !== undefined ? { wait: { watcher: publisher, timeoutMs: a.wait * 1000 } } : {}),
          }),
        ),
      );
    },
  )
  .command(
    "status",
    "list rotations pending and finished (no broker needed)",
    (y) => y,
    async () => {
      console.log(JSON.stringify((await readTrustFile(stateDir())).devices, null, 2));
    },
  )
  .demandCommand(1)
  .strict()
  .fail((msg, err, y) => {
    if (err) say(err.message);
    else {
      say(msg);
      y.showHelp();
    }
    process.exit(1);
  })
  .help()
  .parseAsync();
