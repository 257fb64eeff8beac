/**
 * CPU time of a process from Linux's /proc/<pid>/stat (utime + stime, fields 14 and 15, in clock ticks of
 * 1/100 s: USER_HZ is 100 on every Linux architecture Node runs on), and a sampler that keeps the last figure of
 * a process that has since died, so a broker node killed mid-run still counts what it used before.
 */
import { readFileSync } from "node:fs";

const TICKS_PER_S = 100;

/** utime + stime of one /proc/<pid>/stat line, in seconds. The command name (field 2) may hold spaces and ")". */
export function parseProcStatCpuSeconds(stat: string): number {
  const close = stat.lastIndexOf(")");
  if (close < 0) throw new Error("not a /proc/<pid>/stat line");
  // Fields from 3 (state) on: utime is field 14, stime 15.
  const fields = stat.slice(close + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime))
    throw new Error("no utime/stime in /proc/<pid>/stat");
  return (utime + stime) / TICKS_PER_S;
}

/** CPU seconds used so far by `pid` (Linux only); throws if the process is gone. */
export function procCpuSeconds(pid: number): number {
  return parseProcStatCpuSeconds(readFileSync(`/proc/${pid}/stat`, "utf8"));
}

/**
 * CPU used by a set of processes since each was first seen. sample() reads every known process; a process that
 * is gone keeps its last reading.
 */
export class CpuSampler {
  private readonly first = new Map<number, number>();
  private readonly last = new Map<number, number>();

  constructor(private readonly read: (pid: number) => number = procCpuSeconds) {}

  /** Reads `pids` (new ones start counting from now) and every process seen before. */
  sample(pids: readonly number[] = []): void {
    for (const pid of new Set([...this.first.keys(), ...pids])) {
      if (pid <= 0) continue;
      let v: number;
      try {
        v = this.read(pid);
      } catch {
        continue;
      }
      if (!this.first.has(pid)) this.first.set(pid, v);
      this.last.set(pid, v);
    }
  }

  /** CPU seconds used by all of them between their first and last readings. */
  totalSeconds(): number {
    let total = 0;
    for (const [pid, v0] of this.first) total += (this.last.get(pid) ?? v0) - v0;
    return total;
  }
}
