/** `npm run broker`: foreground start, open-file limit, restart on request, clean stop. */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { repoRoot } from "../../../shared/state-dir";
import { OPEN_FILE_TARGET } from "../../src/broker/mosquitto";
import { isProcessAlive } from "../../src/broker/run-state";
import { createBrokerTestPki, issue, type BrokerTestPki, type IssuedCert } from "./helpers/test-pki";
import { endClient, tryConnect } from "./helpers/clients";

const run = promisify(execFile);
const CLI = join(repoRoot(), "host/src/cli/broker.ts");
const node = (args: string[]): string[] => ["--import", "tsx", CLI, ...args];

let dir: string;
let state: string;
let dataDir: string;
let pki: BrokerTestPki;
let dev: IssuedCert;
let cli: ChildProcess | undefined;
const pids: number[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-broker-cli-"));
  state = join(dir, "state");
  dataDir = join(dir, "data");
  pki = await createBrokerTestPki(dir);
  dev = await issue(pki.ca, { cn: "dev-cli", kind: "p256", usage: "client" });
  // The default PKI layout under the state folder (pki/src/paths.ts).
  await mkdir(join(state, "pki/public"), { recursive: true });
  await mkdir(join(state, "pki/broker"), { recursive: true });
  await copyFile(pki.paths.caBundle, join(state, "pki/public/ca-bundle.pem"));
  await copyFile(pki.paths.crl, join(state, "pki/public/crl.pem"));
  await copyFile(pki.paths.broker.cert, join(state, "pki/broker/cert.pem"));
  await copyFile(pki.paths.broker.key, join(state, "pki/broker/key.pem"));
});

afterAll(async () => {
  if (cli?.pid && isProcessAlive(cli.pid)) cli.kill("SIGKILL");
  for (const pid of pids) if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
  await rm(dir, { recursive: true, force: true });
});

function waitForLine(proc: ChildProcess, re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = "";
    let err = "";
    const timer = setTimeout(
      () => reject(new Error(`no line matching ${re} within ${timeoutMs} ms; stderr: ${err}`)),
      timeoutMs,
    );
    proc.stderr?.on("data", (c: Buffer) => (err += c.toString()));
    proc.stdout?.on("data", (c: Buffer) => {
      buf += c.toString();
      const m = buf.match(re);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    proc.once("exit", (code) => reject(new Error(`CLI exited (${code}) before ${re}; stderr: ${err}`)));
  });
}

async function softOpenFileLimit(pid: number): Promise<number> {
  const limits = await readFile(`/proc/${pid}/limits`, "utf8");
  const m = limits.match(/^Max open files\s+(\d+)\s+(\d+|unlimited)/m);
  if (!m) throw new Error("no open-file line in /proc/PID/limits");
  return Number(m[1]);
}

it("--help exits 0 and describes the revocation step", async () => {
  const { stdout } = await run(process.execPath, node(["--help"]), { cwd: repoRoot() });
  expect(stdout).toMatch(/npm run broker -- restart/);
  expect(stdout).toMatch(/--port/);
});

it("exits non-zero with one clear line when the PKI is missing", async () => {
  const r = await run(process.execPath, node(["--port", "0"]), {
    cwd: repoRoot(),
    env: { ...process.env, EST_STATE_DIR: join(dir, "empty") },
  }).then(
    () => ({ code: 0, stderr: "" }),
    (e: { code: number; stderr: string }) => e,
  );
  expect(r.code).toBe(1);
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  expect(r.stderr).toMatch(/CA bundle not found/);
});

it("starts in the foreground with the open-file limit raised, restarts on request, and stops cleanly on SIGTERM", async () => {
  // Node raises its own soft limit at start; the launch script's raise is tested in launcher.test.ts.
  cli = spawn(
    "sh",
    [
      "-c",
      'ulimit -S -n 1024 && exec "$@"',
      "sh",
      process.execPath,
      ...node(["--port", "0", "--data-dir", dataDir, "--quiet"]),
    ],
    {
      cwd: repoRoot(),
      env: { ...process.env, EST_STATE_DIR: state },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const ready = await waitForLine(cli, /broker: ready (mqtts:\/\/127\.0\.0\.1:(\d+)) pid (\d+)/);
  const url = ready[1] as string;
  const pid1 = Number(ready[3]);
  pids.push(pid1);
  const { stdout: hard } = await run("sh", ["-c", "ulimit -Hn"]);
  const expected = hard.trim() === "unlimited" ? OPEN_FILE_TARGET : Math.min(OPEN_FILE_TARGET, Number(hard));
  expect(await softOpenFileLimit(pid1)).toBe(expected);

  const c1 = await tryConnect({ url, ca: pki.ca.certPem, identity: dev, clientId: "dev-cli" });
  expect(c1.ok).toBe(true);
  const closed = c1.ok ? new Promise<void>((r) => c1.client.once("close", () => r())) : Promise.resolve();

  const restarted = waitForLine(cli, /broker: restarted (mqtts:\S+) pid (\d+)/);
  const { stdout } = await run(process.execPath, node(["restart", "--data-dir", dataDir]), {
    cwd: repoRoot(),
    env: { ...process.env, EST_STATE_DIR: state },
  });
  expect(stdout).toMatch(/restarted .* pid \d+ \(was \d+\)/);
  const r = await restarted;
  const pid2 = Number(r[2]);
  pids.push(pid2);
  expect(r[1]).toBe(url);
  expect(pid2).not.toBe(pid1);
  expect(isProcessAlive(pid1)).toBe(false);
  await closed;
  const c2 = await tryConnect({ url, ca: pki.ca.certPem, identity: dev, clientId: "dev-cli" });
  expect(c2.ok).toBe(true);
  if (c2.ok) await endClient(c2.client);
  if (c1.ok) await endClient(c1.client);

  const exited = new Promise<number | null>((res) => cli?.once("exit", (code) => res(code)));
  cli.kill("SIGTERM");
  expect(await exited).toBe(0);
  expect(isProcessAlive(pid2)).toBe(false);
  // A clean stop saved the persistence database.
  expect((await stat(join(dataDir, "mosquitto.db"))).size).toBeGreaterThan(0);
});
