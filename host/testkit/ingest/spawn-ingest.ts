// Runs `npm run ingest` as a child process (tests and benchmarks) and waits until
// it is subscribed: the CLI prints one JSON line {"ready":true,"metricsPort":N} on stdout.
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { repoRoot } from "../../../shared/state-dir";

export interface IngestProcess {
  child: ChildProcess;
  pid: number;
  metricsPort: number;
  /** Log lines (stderr), newest last; kept for diagnostics. */
  output: string[];
  exited: Promise<number | null>;
  /** SIGTERM (graceful: flush, ack, disconnect) by default; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function spawnIngestCli(o: {
  stateDir: string;
  args: string[];
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
  keepLines?: number;
}): Promise<IngestProcess> {
  const root = repoRoot();
  // Node with tsx as a loader, not the tsx CLI: the CLI relays SIGTERM to its child and sends
  // SIGKILL when the child does not confirm within ~60 ms, which a busy ingest may miss.
  const child = spawn(
    process.execPath,
    [...(o.nodeArgs ?? []), "--import", "tsx", join(root, "host/src/cli/ingest.ts"), ...o.args],
    {
      cwd: root,
      env: { ...process.env, EST_STATE_DIR: o.stateDir },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const keep = o.keepLines ?? 2000;
  const output: string[] = [];
  const push = (l: string) => {
    output.push(l);
    if (output.length > keep) output.splice(0, output.length - keep);
  };
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  createInterface({ input: child.stderr! }).on("line", push);
  const timeoutMs = o.readyTimeoutMs ?? 30_000;
  const metricsPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`ingest did not become ready within ${timeoutMs} ms:\n${output.slice(-20).join("\n")}`),
      );
    }, timeoutMs);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const msg = JSON.parse(line) as { ready?: boolean; metricsPort?: number };
        if (msg.ready) {
          clearTimeout(timer);
          resolve(msg.metricsPort ?? 0);
          return;
        }
      } catch {
        // not the ready line
      }
      push(line);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`ingest exited (${code}) before it was ready:\n${output.slice(-20).join("\n")}`));
    });
  });
  return {
    child,
    pid: child.pid ?? 0,
    metricsPort,
    output,
    exited,
    stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Scrapes the ingest's /metrics into name{labels} → value. */
export async function scrapeMetrics(port: number, host = "127.0.0.1"): Promise<Map<string, number>> {
  const res = await fetch(`http://${host}:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of a metric over all its label sets. */
export function sumMetric(m: Map<string, number>, name: string): number {
  let total = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) total += v;
  return total;
}
