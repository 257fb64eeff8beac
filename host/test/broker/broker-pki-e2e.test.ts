/**
 * End to end with the fleet PKI (pki/src) and both CLIs, as an operator runs them:
 * `npm run broker` in the foreground, `npm run pki -- revoke <id>`, `npm run broker -- restart`.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ensureDevPki, issueDevice, type PkiPaths } from "../../../pki/src/index";
import { isProcessAlive } from "../../src/broker/run-state";
import { repoRoot } from "../../../shared/state-dir";
import {
  endClient,
  mustConnect,
  publishQos1,
  recorder,
  subscribe,
  tryConnect,
  type Identity,
} from "./helpers/clients";

const run = promisify(execFile);
const tsx = (script: string, args: string[]): string[] => [
  "--import",
  "tsx",
  join(repoRoot(), script),
  ...args,
];

let dir: string;
let state: string;
let dataDir: string;
let paths: PkiPaths;
let ca: string;
let url: string;
let cli: ChildProcess;
let ingest: MqttClient;
let ingestRx: ReturnType<typeof recorder>;
const clients: MqttClient[] = [];

async function identity(p: { cert: string; key: string }): Promise<Identity> {
  return { certPem: await readFile(p.cert, "utf8"), keyPem: await readFile(p.key, "utf8") };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-broker-e2e-"));
  state = join(dir, "state");
  dataDir = join(dir, "broker-data");
  paths = await ensureDevPki({
    stateDir: state,
    devices: ["board-1", "board-2"],
    services: ["ingest"],
    deviceKeyType: "p256",
  });
  await issueDevice({ stateDir: state, id: "board-rsa", keyType: "rsa-2048" });
  ca = await readFile(paths.caBundle, "utf8");

  cli = spawn(
    process.execPath,
    tsx("host/src/cli/broker.ts", ["--port", "0", "--data-dir", dataDir, "--quiet"]),
    {
      cwd: repoRoot(),
      env: { ...process.env, EST_STATE_DIR: state },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  url = await new Promise<string>((resolve, reject) => {
    let out = "";
    let err = "";
    cli.stderr?.on("data", (c: Buffer) => (err += c.toString()));
    cli.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      const m = out.match(/broker: ready (mqtts:\S+)/);
      if (m?.[1]) resolve(m[1]);
    });
    cli.once("exit", (code) => reject(new Error(`broker CLI exited (${code}): ${err}`)));
  });
  ingest = await mustConnect({
    url,
    ca,
    identity: await identity(paths.service("ingest")),
    clientId: "ingest-e2e",
  });
  clients.push(ingest);
  ingestRx = recorder(ingest);
  await subscribe(ingest, ["electrolyser/+/telemetry"]);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => endClient(c)));
  if (cli?.pid && isProcessAlive(cli.pid)) {
    const exited = new Promise((r) => cli.once("exit", r));
    cli.kill("SIGTERM");
    await exited;
  }
  await rm(dir, { recursive: true, force: true });
});

it("a PKI-issued P-256 board publishes to its topic and the PKI-issued ingest identity receives it", async () => {
  const board = await mustConnect({
    url,
    ca,
    identity: await identity(paths.device("board-2")),
    clientId: "board-2",
  });
  clients.push(board);
  const payload = `e2e-${randomUUID()}`;
  expect((await publishQos1(board, "electrolyser/board-2/telemetry", payload)).reasonCode).toBe(0);
  await ingestRx.waitFor((m) => m.payload === payload && m.topic === "electrolyser/board-2/telemetry");
  expect((await publishQos1(board, "electrolyser/board-1/telemetry", payload)).reasonCode).toBe(0x87);
});

it("a PKI-issued RSA board connects with the firmware's profile (TLS 1.2, ECDHE-RSA-AES128-GCM-SHA256)", async () => {
  const r = await tryConnect({
    url,
    ca,
    identity: await identity(paths.device("board-rsa")),
    clientId: "board-rsa",
    tls: { minVersion: "TLSv1.2", maxVersion: "TLSv1.2", ciphers: "ECDHE-RSA-AES128-GCM-SHA256" },
  });
  expect(r.ok ? r.tls : r.error).toEqual({
    protocol: "TLSv1.2",
    cipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
  });
  if (r.ok) await endClient(r.client);
});

it("`npm run pki -- revoke` then `npm run broker -- restart` locks a board out; others carry on", async () => {
  const env = { ...process.env, EST_STATE_DIR: state };
  const revoked = await identity(paths.device("board-1"));
  const live = await mustConnect({ url, ca, identity: revoked, clientId: "board-1" });
  clients.push(live);
  const dropped = new Promise<void>((r) => live.once("close", () => r()));

  const rv = await run(process.execPath, tsx("pki/src/cli.ts", ["revoke", "board-1"]), {
    cwd: repoRoot(),
    env,
  });
  expect(rv.stdout).toMatch(/revoked/);
  const rs = await run(process.execPath, tsx("host/src/cli/broker.ts", ["restart", "--data-dir", dataDir]), {
    cwd: repoRoot(),
    env,
  });
  expect(rs.stdout).toMatch(/restarted/);

  await dropped;
  const again = await tryConnect({ url, ca, identity: revoked, clientId: "board-1" });
  expect(again.ok).toBe(false);
  if (!again.ok) expect(again.error).toMatch(/certificate revoked/i);

  // ingest (mqtt.js would reconnect; this one was made without reconnects) and board-2 come back.
  const ingest2 = await mustConnect({
    url,
    ca,
    identity: await identity(paths.service("ingest")),
    clientId: "ingest-e2e-2",
  });
  clients.push(ingest2);
  const rx = recorder(ingest2);
  await subscribe(ingest2, ["electrolyser/+/telemetry"]);
  const board2 = await mustConnect({
    url,
    ca,
    identity: await identity(paths.device("board-2")),
    clientId: "board-2b",
  });
  clients.push(board2);
  const payload = `after-revoke-${randomUUID()}`;
  expect((await publishQos1(board2, "electrolyser/board-2/telemetry", payload)).reasonCode).toBe(0);
  await rx.waitFor((m) => m.payload === payload);
});
