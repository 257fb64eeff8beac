/** `npm run broker` as a child process on a free port, optionally under a libfaketime clock offset. */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { isProcessAlive } from "../../../src/broker/run-state";
import { repoRoot } from "../../../../shared/state-dir";

/** Debian's libfaketime (package libfaketime, which `faketime` depends on). */
export const FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

export interface BrokerCli {
  url: string;
  proc: ChildProcess;
  /** Everything the launcher wrote to stderr so far. */
  stderr(): string;
  stop(): Promise<void>;
}

export function startBrokerCli(o: {
  stateDir: string;
  dataDir: string;
  fakeDays?: number;
}): Promise<BrokerCli> {
  const args = ["--import", "tsx", join(repoRoot(), "host/src/cli/broker.ts"), "--port", "0", "--quiet"];
  // libfaketime preloaded into the launcher itself (and so into the mosquitto it starts), not through the
  // `faketime` wrapper, whose PID is not the launcher's: stopping it could leave the broker running.
  const clock =
    o.fakeDays === undefined
      ? {}
      : { LD_PRELOAD: FAKETIME_LIB, FAKETIME: `+${o.fakeDays}d`, FAKETIME_NO_CACHE: "1" };
  const proc = spawn(process.execPath, [...args, "--data-dir", o.dataDir], {
    cwd: repoRoot(),
    env: { ...process.env, EST_STATE_DIR: o.stateDir, ...clock },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stderr?.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const stop = async (): Promise<void> => {
    if (proc.pid && isProcessAlive(proc.pid) && proc.exitCode === null) {
      proc.kill("SIGTERM");
      await exited;
    }
  };
  return new Promise((resolve, reject) => {
    proc.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      const m = out.match(/broker: ready (\S+)/);
      if (m?.[1]) resolve({ url: m[1], proc, stderr: () => err, stop });
    });
    proc.once("exit", (code) => reject(new Error(`broker CLI exited (${code}): ${err}`)));
  });
}
