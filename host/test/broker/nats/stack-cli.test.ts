/**
 * `npm run stack -- --broker nats-cluster --ingest-workers 2` as a child process: three nodes, the store and two
 * JetStream ingest workers come up; 60 encrypted boards publish while one worker is SIGKILLed; the stack restarts
 * it instead of stopping, every reading is stored exactly once, and SIGINT stops every process by PID.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { ensureDevPki } from "../../../../pki/src/index";
import { pkiPaths } from "../../../../pki/src/paths";
import { isProcessAlive } from "../../../src/broker/run-state";
import { probeTls } from "../../../src/broker/wait-tls";
import { prepareState } from "../../../src/setup/prepare";
import { deviceIds, runEmulator } from "../../../src/emulator/run";
import { scrapeMetrics, sumMetric } from "../../../testkit/ingest/spawn-ingest";
import { repoRoot } from "../../../../shared/state-dir";
import { diffStored, readDeadLetters, storedSeqs, waitUntil } from "../../ingest/helpers/stack";

interface Ready {
  broker: string;
  brokers: string[];
  store: string;
  ingestMetrics: string;
  ingests: { name: string; pid: number; metrics: string }[];
  pids: { "nats-cluster": number[]; victoriaMetrics: number; ingest: number[] };
}

const BOARDS = 60;
const PREFIX = "sw-";

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

const written = async (metricsUrl: string): Promise<number> => {
  try {
    return sumMetric(await scrapeMetrics(Number(new URL(metricsUrl).port)), "ingest_written_total");
  } catch {
    return -1;
  }
};

describe("npm run stack -- --broker nats-cluster --ingest-workers 2", () => {
  it("runs two workers, replaces one killed with SIGKILL, loses nothing, and stops every process on SIGINT", async () => {
    const state = await mkdtemp(join(tmpdir(), "est-nats-stack-"));
    dirs.push(state);
    // The boards' certificates exist before the cluster starts (a later one would restart every node).
    await prepareState(state);
    await ensureDevPki({
      stateDir: state,
      devices: deviceIds(BOARDS, PREFIX),
      deviceKeyType: "p256",
      services: [],
    });
    const args = [
      "--import",
      "tsx",
      "host/src/cli/stack.ts",
      "--broker",
      "nats-cluster",
      "--ingest-workers",
      "2",
      "--broker-port",
      "0",
      "--store-port",
      "0",
      "--metrics-port",
      "0",
      "--encrypted",
    ];
    const child = spawn(process.execPath, args, {
      cwd: repoRoot(),
      env: { ...process.env, EST_STATE_DIR: state },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (c: string) => (stderr = (stderr + c).slice(-2_000_000)));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      const ready = await new Promise<Ready>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stack not ready: ${stderr.slice(-8000)}`)), 150_000);
        void exited.then((code) => reject(new Error(`stack exited ${code}: ${stderr.slice(-8000)}`)));
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
      expect(ready.ingests.map((i) => i.name)).toEqual(["ingest-worker-1", "ingest-worker-2"]);
      expect(new Set(ready.ingests.map((i) => i.metrics)).size).toBe(2);
      expect(ready.pids.ingest).toEqual(ready.ingests.map((i) => i.pid));
      expect(stderr).not.toMatch(/ingest: connected to mqtts:/);
      const pids = [...ready.pids["nats-cluster"], ready.pids.victoriaMetrics, ...ready.pids.ingest];
      expect(pids).toHaveLength(6);
      for (const pid of pids) expect(isProcessAlive(pid), `pid ${pid}`).toBe(true);

      const [victim, survivor] = ready.ingests as [Ready["ingests"][0], Ready["ingests"][0]];
      let newPid = -1;
      const [summary] = await Promise.all([
        runEmulator({
          count: BOARDS,
          idPrefix: PREFIX,
          rateHz: 1,
          durationS: 15,
          brokerUrl: ready.brokers.join(","),
          stateDir: state,
          encrypt: true,
          deviceKeyType: "p256",
          seed: 1818,
          boot: 1,
          connectRate: 100,
          verify: false,
          drainTimeoutS: 60,
        }),
        (async () => {
          // Both workers are writing before one dies: the load is shared.
          await waitUntil(
            async () => (await written(victim.metrics)) > 20 && (await written(survivor.metrics)) > 20,
            60_000,
            "both workers writing",
          );
          process.kill(victim.pid, "SIGKILL");
          // The stack replaces it (same identity, same metrics port) and goes on running.
          await waitUntil(
            () => {
              const m = /ingest-worker-1: restarted \(pid (\d+)/.exec(stderr);
              if (m) newPid = Number(m[1]);
              return newPid > 0;
            },
            30_000,
            "the killed worker restarted",
          );
          await waitUntil(async () => (await written(victim.metrics)) >= 0, 10_000, "its metrics port");
        })(),
      ]);
      expect(stderr).toMatch(new RegExp(`ingest-worker-1: pid ${victim.pid} exited \\(SIGKILL\\)`));
      expect(newPid).not.toBe(victim.pid);
      expect(isProcessAlive(newPid)).toBe(true);
      expect(child.exitCode).toBeNull();
      expect(summary.connect.connected).toBe(BOARDS);
      expect(summary.messages.unacked).toBe(0);

      // What the killed worker held unacknowledged comes again after AckWait (15 s).
      const expected = new Map(
        summary.devices.map((d) => [d.id, Array.from({ length: d.published }, (_, k) => k)]),
      );
      let diff = diffStored(expected, await storedSeqs(ready.store));
      const deadline = Date.now() + 60_000;
      while (diff.missing.length > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 1000));
        diff = diffStored(expected, await storedSeqs(ready.store));
      }
      const dead = (
        await Promise.all(
          ready.ingests.map((i) => readDeadLetters(join(state, "ingest", `dead-letter-${i.name}.jsonl`))),
        )
      ).flat();
      expect({ ...diff, dead: dead.slice(0, 5).map((d) => `${d.reason}: ${d.detail}`) }).toEqual({
        missing: [],
        extra: [],
        dead: [],
      });

      child.kill("SIGINT");
      expect(await exited).toBe(0);
      for (const pid of [...pids, newPid])
        expect(isProcessAlive(pid), `pid ${pid} still running`).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 240_000);
});
