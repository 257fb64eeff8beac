// The stack's ingest supervisor with a fake process: one that dies is started again with the same metrics port
// after a growing backoff; none is started once the stack stops.
import { EventEmitter } from "node:events";
import type { ChildProcess } from "node:child_process";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  metricsPortFor,
  restartDelayMs,
  superviseIngests,
  type spawnIngestChild,
} from "../../src/ingest/supervisor";

class FakeChild extends EventEmitter {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  constructor(readonly pid: number) {
    super();
  }
  kill(signal: NodeJS.Signals = "SIGTERM"): boolean {
    this.die(signal);
    return true;
  }
  die(signal: NodeJS.Signals): void {
    if (this.signalCode || this.exitCode !== null) return;
    this.signalCode = signal;
    this.emit("exit", null, signal);
  }
}

afterEach(() => vi.useRealTimers());

describe("ingest supervisor", () => {
  it("backs off 1, 2, 4 … 30 s; worker N listens on P + N - 1, or on a free port each", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(restartDelayMs)).toEqual([
      1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000,
    ]);
    expect([0, 1, 2].map((i) => metricsPortFor(9464, i))).toEqual([9464, 9465, 9466]);
    expect(metricsPortFor(0, 2)).toBe(0);
  });

  it("restarts a process that died, on the port it first got, and none after stop()", async () => {
    vi.useFakeTimers();
    const children: FakeChild[] = [];
    const argsSeen: string[][] = [];
    const spawnChild: typeof spawnIngestChild = (o) => {
      const c = new FakeChild(100 + children.length);
      children.push(c);
      argsSeen.push(o.args);
      return Promise.resolve({ child: c as unknown as ChildProcess, pid: c.pid, metricsPort: 40_001 });
    };
    const lines: string[] = [];
    const sup = await superviseIngests({
      specs: [{ name: "w1", metricsPort: 0, args: (p) => ["--metrics-port", String(p)] }],
      env: {},
      log: (l) => lines.push(l),
      spawnChild,
    });
    const w = sup.ingests[0]!;
    expect(w.pid).toBe(100);
    children[0]!.die("SIGKILL");
    expect(w.pid).toBe(-1);
    expect(lines.at(-1)).toMatch(/w1: pid 100 exited \(SIGKILL\); restarting in 1 s/);
    await vi.advanceTimersByTimeAsync(1000);
    expect(w.pid).toBe(101);
    expect(w.restarts).toBe(1);
    expect(argsSeen[1]).toEqual(["--metrics-port", "40001"]);
    // Dies again at once: the next wait is longer.
    children[1]!.die("SIGKILL");
    expect(lines.at(-1)).toMatch(/restarting in 2 s/);
    await vi.advanceTimersByTimeAsync(2000);
    expect(w.pid).toBe(102);
    await sup.stop(1000);
    expect(children[2]!.signalCode).toBe("SIGTERM");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(children).toHaveLength(3);
  });
});
