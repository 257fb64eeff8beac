/**
 * A CRL that never lapses: `npm run broker` started 100 days after setup (libfaketime's clock offset on
 * the launcher and its mosquitto) still admits a valid board, because the launcher re-signs the CRL
 * before mosquitto reads it. Without that, the 90-day CRL has lapsed and OpenSSL refuses every client.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ensureDevPki, type PkiPaths } from "../../../pki/src/index";
import { viewCrl } from "../../src/broker/crl-view";
import { isProcessAlive } from "../../src/broker/run-state";
import { repoRoot } from "../../src/state/state-dir";
import { endClient, publishQos1, tryConnect } from "./helpers/clients";

const DAY = 86_400_000;
let dir: string;
let paths: PkiPaths;
let cli: ChildProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-crl-lapse-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: ["dev-lapse"],
    services: ["ingest"],
    deviceKeyType: "p256",
  });
});

afterAll(async () => {
  if (cli?.pid && isProcessAlive(cli.pid)) {
    const exited = new Promise((r) => cli?.once("exit", r));
    cli.kill("SIGTERM");
    await exited;
  }
  await rm(dir, { recursive: true, force: true });
});

function startBrokerLater(days: number): Promise<string> {
  cli = spawn(
    "faketime",
    [
      "-f",
      `+${days}d`,
      process.execPath,
      "--import",
      "tsx",
      join(repoRoot(), "host/src/cli/broker.ts"),
      "--port",
      "0",
      "--quiet",
      "--data-dir",
      join(dir, "data"),
    ],
    { cwd: repoRoot(), env: { ...process.env, EST_STATE_DIR: dir }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const proc = cli;
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    proc.stderr?.on("data", (c: Buffer) => (err += c.toString()));
    proc.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      const m = out.match(/broker: ready (\S+)/);
      if (m?.[1]) resolve(m[1]);
    });
    proc.once("exit", (code) => reject(new Error(`broker CLI exited (${code}): ${err}`)));
  });
}

it("a broker started 100 days after setup admits a valid board", async () => {
  const before = viewCrl(await readFile(paths.crl, "utf8"));
  const url = await startBrokerLater(100);

  const identity = {
    certPem: await readFile(paths.device("dev-lapse").cert, "utf8"),
    keyPem: await readFile(paths.device("dev-lapse").key, "utf8"),
  };
  const r = await tryConnect({
    url,
    ca: await readFile(paths.root, "utf8"),
    identity,
    clientId: "dev-lapse",
  });
  expect(r.ok ? "connected" : r.error).toBe("connected");
  if (!r.ok) return;
  expect((await publishQos1(r.client, "electrolyser/dev-lapse/telemetry", "after-100-days")).reasonCode).toBe(
    0,
  );
  await endClient(r.client);

  const after = viewCrl(await readFile(paths.crl, "utf8"));
  // Re-signed on the broker's (shifted) clock, good for the 90 days after that.
  expect(after.thisUpdate.getTime()).toBeGreaterThan(before.thisUpdate.getTime() + 99 * DAY);
  expect(after.nextUpdate.getTime()).toBeGreaterThan(before.nextUpdate.getTime());
});
