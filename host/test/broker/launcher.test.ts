/** The mosquitto launcher: ports, restart, stop by PID, open-file limit, clear start errors. */
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  LAUNCH_SCRIPT,
  OPEN_FILE_TARGET,
  startMosquitto,
  type MosquittoHandle,
} from "../../src/broker/mosquitto";
import { isProcessAlive } from "../../src/broker/run-state";
import { repoRoot } from "../../../shared/state-dir";
import { createBrokerTestPki, createCa, issue, writePem, type BrokerTestPki } from "./helpers/test-pki";
import { tryConnect } from "./helpers/clients";

const run = promisify(execFile);
let dir: string;
let pki: BrokerTestPki;
const handles: MosquittoHandle[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-broker-launcher-"));
  pki = await createBrokerTestPki(dir);
});

afterAll(async () => {
  await Promise.all(handles.map((h) => h.stop()));
  await rm(dir, { recursive: true, force: true });
});

async function start(
  name: string,
  extra: Partial<Parameters<typeof startMosquitto>[0]> = {},
): Promise<MosquittoHandle> {
  const h = await startMosquitto({ pki: pki.paths, dataDir: join(dir, name), ...extra });
  handles.push(h);
  return h;
}

/** Runs the launch script with `sh -c 'ulimit -n'` in place of mosquitto and returns what it printed. */
async function limitAfterLaunchScript(prefix: string): Promise<string> {
  const { stdout } = await run("sh", [
    "-c",
    `${prefix} && exec sh -c "$1" sh /bin/sh "ulimit -n"`,
    "outer",
    LAUNCH_SCRIPT,
  ]);
  return stdout.trim();
}

describe("launch script", () => {
  it("raises a low soft open-file limit", async () => {
    const { stdout: hard } = await run("sh", ["-c", "ulimit -Hn"]);
    const expected =
      hard.trim() === "unlimited" ? OPEN_FILE_TARGET : Math.min(OPEN_FILE_TARGET, Number(hard));
    expect(await limitAfterLaunchScript("ulimit -S -n 1024")).toBe(String(expected));
  });

  it("falls back to the hard limit when the hard limit is below the target", async () => {
    expect(await limitAfterLaunchScript("ulimit -S -n 1024 && ulimit -H -n 4096")).toBe("4096");
  });
});

describe("startMosquitto", () => {
  it("picks a free loopback port, runs the broker as the reported PID, and stops it", async () => {
    const h = await start("basic");
    expect(h.host).toBe("127.0.0.1");
    expect(h.port).toBeGreaterThan(0);
    expect(h.url).toBe(`mqtts://127.0.0.1:${h.port}`);
    expect(isProcessAlive(h.pid)).toBe(true);
    expect((await readFile(`/proc/${h.pid}/cmdline`, "utf8")).split("\0")[0]).toMatch(/mosquitto$/);
    const conf = await readFile(h.configFile, "utf8");
    expect(conf).toContain(`listener ${h.port} 127.0.0.1`);
    const pid = h.pid;
    await h.stop();
    expect(isProcessAlive(pid)).toBe(false);
    await h.stop(); // idempotent
  });

  it("the broker does not outlive a launcher that is killed (SIGKILL)", async () => {
    const script = [
      `import { startMosquitto } from ${JSON.stringify(join(repoRoot(), "host/src/broker/mosquitto.ts"))};`,
      `const h = await startMosquitto(${JSON.stringify({ pki: pki.paths, dataDir: join(dir, "orphan") })});`,
      `console.log("PID " + h.pid);`,
      `setInterval(() => {}, 1000);`,
    ].join("\n");
    const scriptFile = join(dir, "launch-then-hang.mts");
    await writeFile(scriptFile, script);
    const child = spawn(process.execPath, ["--import", "tsx", scriptFile], {
      cwd: repoRoot(),
      stdio: ["ignore", "pipe", "inherit"],
    });
    const pid = await new Promise<number>((resolve, reject) => {
      let out = "";
      child.stdout?.on("data", (c: Buffer) => {
        out += c.toString();
        const m = out.match(/PID (\d+)/);
        if (m) resolve(Number(m[1]));
      });
      child.once("exit", (code) => reject(new Error(`launcher exited early (${code})`)));
    });
    expect(isProcessAlive(pid)).toBe(true);
    child.kill("SIGKILL");
    const deadline = Date.now() + 10_000;
    while (isProcessAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const alive = isProcessAlive(pid);
    if (alive) process.kill(pid, "SIGKILL");
    expect(alive).toBe(false);
  });

  it("two brokers started at once get different ports", async () => {
    const [a, b] = await Promise.all([start("par-a"), start("par-b")]);
    expect(a.port).not.toBe(b.port);
    await Promise.all([a.stop(), b.stop()]);
  });

  it("restart keeps the port and data folder, replaces the process, and accepts clients again", async () => {
    const dev = await issue(pki.ca, { cn: "dev-l", kind: "p256", usage: "client" });
    const h = await start("restart");
    const { port, pid, dataDir } = h;
    await h.restart();
    expect(h.port).toBe(port);
    expect(h.dataDir).toBe(dataDir);
    expect(h.pid).not.toBe(pid);
    expect(isProcessAlive(pid)).toBe(false);
    const r = await tryConnect({ url: h.url, ca: pki.ca.certPem, identity: dev, clientId: "dev-l" });
    expect(r.ok).toBe(true);
    if (r.ok) r.client.end(true);
    await h.stop();
  });

  it("fails clearly when the requested port is taken", async () => {
    const blocker: Server = createServer((s) => s.destroy());
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
    const port = (blocker.address() as { port: number }).port;
    await expect(start("busy", { port, readyTimeoutMs: 5000 })).rejects.toThrow(
      /mosquitto did not start[\s\S]*address already in use/i,
    );
    await new Promise<void>((r) => blocker.close(() => r()));
  });

  it("fails clearly when the mosquitto binary is missing", async () => {
    await expect(start("nobin", { binary: join(dir, "no-such-mosquitto") })).rejects.toThrow(
      /mosquitto binary not found/,
    );
  });

  it("fails clearly when the CRL is not in OpenSSL's PEM label", async () => {
    const crl = await readFile(pki.paths.crl, "utf8");
    const bad = await writePem(dir, "crl-bad-label.pem", crl.replace(/X509 CRL/g, "CRL"));
    await expect(start("badcrl", { pki: { ...pki.paths, crl: bad } })).rejects.toThrow(/X509 CRL/);
  });

  it("reports mosquitto's own error when the broker key does not match its certificate", async () => {
    const other = await issue(await createCa("Other", "p256"), { cn: "x", kind: "p256", usage: "server" });
    const key = join(dir, "mismatch.key.pem");
    await writeFile(key, other.keyPem, { mode: 0o600 });
    await expect(
      start("mismatch", { pki: { ...pki.paths, broker: { cert: pki.paths.broker.cert, key } } }),
    ).rejects.toThrow(/mosquitto did not start[\s\S]*(inconsistent|key)/i);
  });
});
