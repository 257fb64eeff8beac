// Starts Debian's VictoriaMetrics single-node binary for tests, benchmarks and the Docker-free stack,
// and offers the few HTTP reads the tests need (PromQL instant/range queries, raw export).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { findFreePort } from "../net/free-port";

export const VICTORIA_METRICS_BIN = process.env.EST_VICTORIA_METRICS_BIN ?? "/usr/bin/victoria-metrics";

export interface VictoriaMetricsHandle {
  /** http://127.0.0.1:PORT — also the InfluxDB v2 write endpoint (`/api/v2/write`). */
  url: string;
  port: number;
  /** PID of the running process; 0 while stopped. */
  pid: number;
  dataDir: string;
  /** Stops the process (SIGTERM, SIGKILL after a grace period) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again after stop(), on the same port and data folder. */
  start(): Promise<void>;
  /** SIGKILLs the process, as a crash would (no flush), and waits for it to exit; start() brings it back. */
  kill(): Promise<void>;
}

export interface VictoriaMetricsOptions {
  dataDir: string;
  /** Loopback port; a free one is picked when omitted. */
  port?: number;
  /**
   * Keep only one sample per series and millisecond (default true). This makes a re-written point
   * (at-least-once redelivery) idempotent, as InfluxDB is for the same series and timestamp.
   * VictoriaMetrics 1.79 stores both copies without it and applies it at query and export time.
   */
  dedup?: boolean;
  /** Default "1y": points older than the retention are dropped on write. */
  retentionPeriod?: string;
  extraArgs?: string[];
  /** How long start() waits for /health (default 20 s). */
  startTimeoutMs?: number;
}

const STOP_GRACE_MS = 10_000;
const PORT_ATTEMPTS = 5;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once("exit", () => r()));
}

export async function startVictoriaMetrics(o: VictoriaMetricsOptions): Promise<VictoriaMetricsHandle> {
  const dataDir = resolve(o.dataDir);
  await mkdir(dataDir, { recursive: true });
  const args = (port: number) => [
    `-storageDataPath=${dataDir}`,
    `-httpListenAddr=127.0.0.1:${port}`,
    // Fresh points must be visible at once, as they are in InfluxDB.
    "-search.latencyOffset=0s",
    `-retentionPeriod=${o.retentionPeriod ?? "1y"}`,
    ...(o.dedup === false ? [] : ["-dedup.minScrapeInterval=1ms"]),
    "-loggerLevel=ERROR",
    ...(o.extraArgs ?? []),
  ];

  let child: ChildProcess | undefined;
  let stderrTail = "";
  // A function, not a narrowed read: `child` changes inside launch().
  const currentPid = (): number => child?.pid ?? 0;

  const launch = async (port: number): Promise<boolean> => {
    stderrTail = "";
    const proc = spawn(VICTORIA_METRICS_BIN, args(port), { stdio: ["ignore", "ignore", "pipe"] });
    proc.stderr?.setEncoding("utf8");
    proc.stderr?.on("data", (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-4000);
    });
    const spawnError = new Promise<Error>((r) => proc.once("error", r));
    child = proc;
    const deadline = Date.now() + (o.startTimeoutMs ?? 20_000);
    while (Date.now() < deadline) {
      const failed = await Promise.race([spawnError, sleep(100).then(() => undefined)]);
      if (failed) throw new Error(`victoria-metrics: cannot run ${VICTORIA_METRICS_BIN}: ${failed.message}`);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        // Most often the port was taken between findFreePort() and the bind.
        if (/address already in use/i.test(stderrTail)) return false;
        throw new Error(
          `victoria-metrics exited (${proc.exitCode ?? proc.signalCode}): ${stderrTail.trim().split("\n").pop() ?? ""}`,
        );
      }
      try {
        // /flags names the data folder: a healthy answer from some other process on this port
        // (the race findFreePort() cannot rule out) is not mistaken for ours.
        const res = await fetch(`http://127.0.0.1:${port}/flags`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) {
          if ((await res.text()).includes(`-storageDataPath=${JSON.stringify(dataDir)}`)) return true;
          if (proc.exitCode === null && proc.signalCode === null) {
            proc.kill("SIGKILL");
            await exited(proc);
          }
          return false;
        }
      } catch {
        // not listening yet
      }
    }
    proc.kill("SIGKILL");
    await exited(proc);
    throw new Error(`victoria-metrics did not become healthy within ${o.startTimeoutMs ?? 20_000} ms`);
  };

  let port = o.port ?? 0;
  let started = false;
  for (let attempt = 0; attempt < PORT_ATTEMPTS && !started; attempt++) {
    if (!o.port) port = await findFreePort("127.0.0.1");
    started = await launch(port);
    if (!started && o.port) await sleep(500);
  }
  if (!started) throw new Error(`victoria-metrics: port ${port} stayed in use`);

  const handle: VictoriaMetricsHandle = {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: currentPid(),
    dataDir,
    async stop() {
      const proc = child;
      child = undefined;
      handle.pid = 0;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const done = await Promise.race([
        exited(proc).then(() => true),
        sleep(STOP_GRACE_MS).then(() => false),
      ]);
      if (!done) {
        proc.kill("SIGKILL");
        await exited(proc);
      }
    },
    async kill() {
      const proc = child;
      child = undefined;
      handle.pid = 0;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGKILL");
      await exited(proc);
    },
    async start() {
      if (child) return;
      // The port was ours a moment ago; the OS may hold it briefly, so retry on the same port.
      for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
        if (await launch(port)) {
          handle.pid = currentPid();
          return;
        }
        await sleep(500);
      }
      throw new Error(`victoria-metrics: port ${port} stayed in use`);
    },
  };
  return handle;
}

// ---- reads for tests and benchmarks ----

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}
export interface PromRangeSeries {
  metric: Record<string, string>;
  values: [number, string][];
}
export interface ExportedSeries {
  metric: Record<string, string>;
  values: number[];
  timestamps: number[];
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as unknown;
}

interface PromResponse<T> {
  status: string;
  data: { resultType: string; result: T };
  error?: string;
}

/** PromQL/MetricsQL instant query (`time` in ms; now when omitted). */
export async function queryInstant(baseUrl: string, query: string, timeMs?: number): Promise<PromSample[]> {
  const params = new URLSearchParams({ query });
  if (timeMs !== undefined) params.set("time", String(timeMs / 1000));
  const body = (await getJson(`${baseUrl}/api/v1/query?${params}`)) as PromResponse<PromSample[]>;
  if (body.status !== "success") throw new Error(`query ${query}: ${body.error ?? body.status}`);
  return body.data.result;
}

export async function queryRange(
  baseUrl: string,
  query: string,
  o: { startMs: number; endMs: number; stepMs: number },
): Promise<PromRangeSeries[]> {
  const params = new URLSearchParams({
    query,
    start: String(o.startMs / 1000),
    end: String(o.endMs / 1000),
    step: `${Math.max(1, Math.round(o.stepMs))}ms`,
  });
  const body = (await getJson(`${baseUrl}/api/v1/query_range?${params}`)) as PromResponse<PromRangeSeries[]>;
  if (body.status !== "success") throw new Error(`query_range ${query}: ${body.error ?? body.status}`);
  return body.data.result;
}

/** Raw samples of every series matching the selector (deduplicated when the store runs with dedup). */
export async function exportSeries(
  baseUrl: string,
  match: string,
  o: { startMs?: number; endMs?: number } = {},
): Promise<ExportedSeries[]> {
  const params = new URLSearchParams({ "match[]": match });
  if (o.startMs !== undefined) params.set("start", String(o.startMs / 1000));
  if (o.endMs !== undefined) params.set("end", String(o.endMs / 1000));
  const res = await fetch(`${baseUrl}/api/v1/export?${params}`, { signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`export ${match}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as ExportedSeries);
}
