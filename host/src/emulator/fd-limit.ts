/**
 * Every TLS connection is a file descriptor, so the open-file limit caps the fleet. Node cannot call
 * setrlimit itself; util-linux's prlimit can raise this process's soft limit up to the hard limit.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

export interface FdLimits {
  soft: number;
  hard: number;
}

export function readFdLimits(): FdLimits | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const m = line ? /Max open files\s+(\S+)\s+(\S+)/.exec(line) : null;
    if (!m) return undefined;
    const num = (s: string): number => (s === "unlimited" ? Number.POSITIVE_INFINITY : Number(s));
    return { soft: num(m[1]!), hard: num(m[2]!) };
  } catch {
    return undefined; // not Linux: nothing to check
  }
}

/** Makes sure `needed` descriptors are available, raising the soft limit if the hard one allows; throws a clear error otherwise. */
export function ensureFdLimit(needed: number): FdLimits | undefined {
  let limits = readFdLimits();
  if (!limits || limits.soft >= needed) return limits;
  if (limits.hard >= needed) {
    const target = Number.isFinite(limits.hard) ? limits.hard : needed;
    try {
      execFileSync(
        "prlimit",
        [
          "--pid",
          String(process.pid),
          `--nofile=${target}:${Number.isFinite(limits.hard) ? limits.hard : "unlimited"}`,
        ],
        {
          stdio: "ignore",
        },
      );
    } catch {
      // prlimit missing or refused: fall through to the error below
    }
    limits = readFdLimits() ?? limits;
  }
  if (limits.soft < needed) {
    throw new Error(
      `the open-file limit is ${limits.soft} (hard ${limits.hard}) but this run needs about ${needed} descriptors; ` +
        `raise it first, e.g. \`ulimit -n ${needed}\` (as root or in /etc/security/limits.conf if the hard limit is lower), or use fewer boards`,
    );
  }
  return limits;
}
