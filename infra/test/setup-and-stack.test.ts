// `npm run setup` writes random secrets to a 0600 .env and the PKI compose mounts; `npm run stack`
// runs mosquitto, victoria-metrics and the ingest, and Ctrl-C stops all three.
import { spawn, execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENV_ENTRIES, parseEnv } from "../../host/src/setup/env-file";
import { pkiPaths } from "../../pki/src/paths";
import { repoRoot } from "../../shared/state-dir";

const run = promisify(execFile);
const TSX = ["--import", "tsx"];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-setup-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("npm run setup", () => {
  it("generates .env (0600) with random secrets, keeps them on a re-run, and creates the PKI compose mounts", async () => {
    const envA = join(dir, "a.env");
    const envB = join(dir, "b.env");
    const env = { ...process.env, EST_STATE_DIR: join(dir, "state") };
    await run(process.execPath, [...TSX, "host/src/cli/setup.ts", "--env-path", envA], {
      cwd: repoRoot(),
      env,
    });
    expect((await stat(envA)).mode & 0o777).toBe(0o600);
    const first = parseEnv(await readFile(envA, "utf8"));
    for (const e of ENV_ENTRIES) expect(first.get(e.key), e.key).toBeTruthy();
    for (const e of ENV_ENTRIES.filter((x) => x.secret))
      expect(first.get(e.key)?.length, e.key).toBeGreaterThanOrEqual(24);

    const { stdout } = await run(process.execPath, [...TSX, "host/src/cli/setup.ts", "--env-path", envA], {
      cwd: repoRoot(),
      env,
    });
    expect(parseEnv(await readFile(envA, "utf8"))).toEqual(first);
    // No secret value is ever printed.
    for (const e of ENV_ENTRIES.filter((x) => x.secret)) expect(stdout).not.toContain(first.get(e.key));

    await run(process.execPath, [...TSX, "host/src/cli/setup.ts", "--env-path", envB], {
      cwd: repoRoot(),
      env,
    });
    const second = parseEnv(await readFile(envB, "utf8"));
    for (const e of ENV_ENTRIES.filter((x) => x.secret)) expect(second.get(e.key)).not.toBe(first.get(e.key));

    const pki = pkiPaths(join(dir, "state"));
    for (const f of [
      pki.caBundle,
      pki.crl,
      pki.broker.cert,
      pki.broker.key,
      pki.service("ingest").cert,
      pki.service("monitor").cert,
      pki.service("telegraf").cert,
    ]) {
      await expect(stat(f), f).resolves.toBeDefined();
    }
    // Inside compose the ingest reaches the broker as `mosquitto`.
    expect(new X509Certificate(await readFile(pki.broker.cert)).subjectAltName).toContain("DNS:mosquitto");
  }, 120_000);
});

describe("npm run stack", () => {
  it("starts broker, store and ingest, and stops all three on SIGINT", async () => {
    const child = spawn(
      process.execPath,
      [
        ...TSX,
        "host/src/cli/stack.ts",
        "--broker-port",
        "0",
        "--store-port",
        "0",
        "--metrics-port",
        "0",
        "--plain",
      ],
      {
        cwd: repoRoot(),
        env: { ...process.env, EST_STATE_DIR: join(dir, "stack-state") },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (c: string) => (stderr = (stderr + c).slice(-6000)));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      const ready = await new Promise<{
        broker: string;
        store: string;
        ingestMetrics: string;
        pids: Record<string, number>;
      }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stack not ready: ${stderr}`)), 90_000);
        void exited.then((code) => reject(new Error(`stack exited ${code}: ${stderr}`)));
        createInterface({ input: child.stdout! }).on("line", (line) => {
          if (!line.includes('"ready":true')) return;
          clearTimeout(timer);
          resolve(JSON.parse(line) as never);
        });
      });
      expect((await fetch(`${ready.store}/health`)).ok).toBe(true);
      const metrics = await fetch(ready.ingestMetrics);
      expect(metrics.ok).toBe(true);
      const port = Number(new URL(ready.broker.replace("mqtts:", "http:")).port);
      await new Promise<void>((resolve, reject) => {
        const s = connect(port, "127.0.0.1", () => {
          s.destroy();
          resolve();
        });
        s.once("error", reject);
      });
      const pids = Object.values(ready.pids);
      expect(pids.length).toBe(3);
      for (const pid of pids) expect(isAlive(pid), `pid ${pid}`).toBe(true);

      child.kill("SIGINT");
      expect(await exited).toBe(0);
      for (const pid of pids) expect(isAlive(pid), `pid ${pid} still running`).toBe(false);
      expect(stderr).toMatch(/ingest: SIGTERM: flushing/);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 150_000);
});
