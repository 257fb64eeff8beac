/**
 * The ingest processes `npm run stack` runs: one MQTT ingest on the single-node broker, or N JetStream workers on the NATS
 * cluster. Each is the ingest CLI as a child process in its own process group (a terminal's Ctrl-C reaches only
 * the stack, which then sends each one SIGTERM: flush, acknowledge, disconnect). One that exits while the stack
 * is not stopping is started again with the same arguments and metrics port, after a backoff, and counted:
 * a killed worker is replaced, and what it held unacknowledged comes to the others (or to it) again.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { repoRoot } from "../../../shared/state-dir";

/** Delay before restart number `restarts` (1-based) of a process that keeps dying: 1 s, 2 s, 4 s … 30 s. */
export function restartDelayMs(restarts: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, restarts - 1));
}

/** A process that ran this long before it died counts as healthy: its next restart waits 1 s again. */
export const HEALTHY_RUN_MS = 60_000;

export interface IngestChild {
  child: ChildProcess;
  pid: number;
  metricsPort: number;
}

/** Starts the ingest CLI and resolves once it printed its ready line ({"ready":true,"metricsPort":N}). */
export function spawnIngestChild(o: {
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Each stderr line of the child (its log). */
  onLog: (line: string) => void;
}): Promise<IngestChild> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(repoRoot(), "host/src/cli/ingest.ts"), ...o.args],
    { cwd: repoRoot(), env: o.env, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  // Never outlive this process, however it ends.
  const reap = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  };
  process.once("exit", reap);
  child.once("exit", () => process.off("exit", reap));
  createInterface({ input: child.stderr! }).on("line", o.onLog);
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      reject(new Error(`ingest exited (${signal ?? code}) before it was ready`));
    child.once("exit", onExit);
    child.once("error", reject);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const msg = JSON.parse(line) as { ready?: boolean; metricsPort?: number };
        if (msg.ready) {
          child.off("exit", onExit);
          resolve({ child, pid: child.pid ?? -1, metricsPort: msg.metricsPort ?? 0 });
          return;
        }
      } catch {
        // not JSON: pass it on
      }
      o.onLog(line);
    });
  });
}

export interface SupervisedIngest {
  readonly name: string;
  /** The running process id, -1 while it is being restarted. */
  readonly pid: number;
  readonly metricsPort: number;
  readonly restarts: number;
}

export interface IngestSupervisor {
  readonly ingests: readonly SupervisedIngest[];
  /** SIGTERM to every process at once (no restarts from here on); SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface IngestSpec {
  name: string;
  /** The CLI arguments, given the metrics port to listen on (the first start's port is kept for restarts). */
  args: (metricsPort: number) => string[];
  metricsPort: number;
}

class Supervised implements SupervisedIngest {
  current: IngestChild | undefined;
  restarts = 0;
  private consecutive = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  port: number;

  constructor(
    readonly spec: IngestSpec,
    private readonly env: NodeJS.ProcessEnv,
    private readonly log: (line: string) => void,
    private readonly spawnChild: typeof spawnIngestChild,
  ) {
    this.port = spec.metricsPort;
  }

  get name(): string {
    return this.spec.name;
  }
  get pid(): number {
    const c = this.current?.child;
    return c && c.exitCode === null && c.signalCode === null ? this.current!.pid : -1;
  }
  get metricsPort(): number {
    return this.port;
  }

  async start(): Promise<void> {
    const started = await this.spawnChild({
      args: this.spec.args(this.port),
      env: this.env,
      onLog: (line) => console.error(`[${this.name}] ${line}`),
    });
    this.current = started;
    // A restart listens where the first start did, so the ready line's URL stays right.
    this.port = started.metricsPort;
    const startedAt = Date.now();
    started.child.once("exit", (code, signal) => {
      if (this.stopping) return;
      if (Date.now() - startedAt >= HEALTHY_RUN_MS) this.consecutive = 0;
      this.scheduleRestart(`pid ${started.pid} exited (${signal ?? code})`);
    });
  }

  private scheduleRestart(why: string): void {
    this.consecutive++;
    const delay = restartDelayMs(this.consecutive);
    this.log(`${this.name}: ${why}; restarting in ${delay / 1000} s (restart ${this.restarts + 1})`);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopping) return;
      this.restarts++;
      this.start().then(
        () =>
          this.log(
            `${this.name}: restarted (pid ${this.pid}, metrics http://127.0.0.1:${this.port}/metrics, restart ${this.restarts})`,
          ),
        (err: unknown) => {
          if (!this.stopping)
            this.scheduleRestart(`restart failed: ${err instanceof Error ? err.message : String(err)}`);
        },
      );
    }, delay);
  }

  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    const c = this.current?.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once("exit", () => r()));
    c.kill("SIGTERM");
    const kill = setTimeout(() => c.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(kill);
  }
}

/** Starts every ingest (in parallel) and keeps them running; rejects if one cannot start the first time. */
export async function superviseIngests(o: {
  specs: readonly IngestSpec[];
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
  /** For tests: how a process is started. */
  spawnChild?: typeof spawnIngestChild;
}): Promise<IngestSupervisor> {
  const all = o.specs.map((s) => new Supervised(s, o.env, o.log, o.spawnChild ?? spawnIngestChild));
  const stop = async (graceMs = 30_000): Promise<void> => {
    await Promise.all(all.map((s) => s.stop(graceMs)));
  };
  const results = await Promise.allSettled(all.map((s) => s.start()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await stop(5000);
    throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
  }
  return { ingests: all, stop };
}

/** Metrics port of ingest `i` (0-based): P, P+1, … for a fixed first port, 0 (a free one each) for 0. */
export function metricsPortFor(first: number, i: number): number {
  return first === 0 ? 0 : first + i;
}
