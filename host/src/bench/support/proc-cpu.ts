// CPU time of another process, for the benchmarks' "CPU per message" figures.
import { readFileSync } from "node:fs";

/** User + system CPU seconds of `pid` so far (fields 14 and 15 of /proc/<pid>/stat, 100 ticks a second). */
export function procCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU seconds of a role whose process is replaced now and then (a broker or ingest restarted after a SIGKILL):
 * polled, the last figure of each PID kept, summed over them.
 */
export class RoleCpu {
  readonly #last = new Map<number, number>();

  sample(pid: number | undefined): void {
    if (!pid) return;
    try {
      this.#last.set(pid, procCpuSeconds(pid));
    } catch {
      // exited between the poll and the read: its last figure stands
    }
  }

  get seconds(): number {
    let s = 0;
    for (const v of this.#last.values()) s += v;
    return s;
  }
}
