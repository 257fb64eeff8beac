/** `npm run broker` as a child process on a free port, optionally under a libfaketime clock offset. */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { isProcessAlive } from "../../../src/broker/run-state";
import { repoRoot } from "../../../src/state/state-dir";

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
  const node = [process.execPath, "--import", "tsx", join(repoRoot(), "host/src/cli/broker.ts")];
  const args = [...node, "--port", "0", "--quiet", "--data-dir", o.dataDir];
  const [cmd, ...rest] = o.fakeDays === undefined ? args : ["faketime", "-f", `+${o.fakeDays}d`, ...args];
  const proc = spawn(cmd as string, rest, {
    cwd: repoRoot(),
    env: { ...process.env, EST_STATE_DIR: o.stateDir },
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
