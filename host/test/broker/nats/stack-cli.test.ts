// `npm run stack -- --broker nats-cluster`: three nodes, the store and the ingest come up; SIGINT stops every one by PID.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { isProcessAlive } from "../../../src/broker/run-state";
import { probeTls } from "../../../src/broker/wait-tls";
import { pkiPaths } from "../../../../pki/src/paths";
import { readFile } from "node:fs/promises";
import { repoRoot } from "../../../../shared/state-dir";

interface Ready {
  broker: string;
  brokers: string[];
  store: string;
  ingestMetrics: string;
  pids: { "nats-cluster": number[]; victoriaMetrics: number; ingest: number };
}

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

describe("npm run stack -- --broker nats-cluster", () => {
  it("starts three nodes, the store and the ingest, and stops all of them on SIGINT", async () => {
    const state = await mkdtemp(join(tmpdir(), "est-nats-stack-"));
    dirs.push(state);
    const args = [
      "--import",
      "tsx",
      "host/src/cli/stack.ts",
      "--broker",
      "nats-cluster",
      "--broker-port",
      "0",
      "--store-port",
      "0",
      "--metrics-port",
      "0",
      "--plain",
    ];
    const child = spawn(process.execPath, args, {
      cwd: repoRoot(),
      env: { ...process.env, EST_STATE_DIR: state },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (c: string) => (stderr = (stderr + c).slice(-8000)));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      const ready = await new Promise<Ready>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stack not ready: ${stderr}`)), 150_000);
        void exited.then((code) => reject(new Error(`stack exited ${code}: ${stderr}`)));
        createInterface({ input: child.stdout! }).on("line", (line) => {
          if (!line.includes('"ready":true')) return;
          clearTimeout(timer);
          resolve(JSON.parse(line) as Ready);
        });
      });
      expect(ready.brokers).toHaveLength(3);
      const ca = await readFile(pkiPaths(state).caBundle);
      for (const url of ready.brokers)
        await probeTls("127.0.0.1", Number(new URL(url.replace("mqtts:", "http:")).port), ca);
      expect((await fetch(ready.ingestMetrics)).ok).toBe(true);
      expect(stderr).toMatch(/ingest: connected to mqtts:/);
      const pids = [...ready.pids["nats-cluster"], ready.pids.victoriaMetrics, ready.pids.ingest];
      expect(pids).toHaveLength(5);
      for (const pid of pids) expect(isProcessAlive(pid), `pid ${pid}`).toBe(true);
      child.kill("SIGINT");
      expect(await exited).toBe(0);
      for (const pid of pids) expect(isProcessAlive(pid), `pid ${pid} still running`).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 200_000);
});
