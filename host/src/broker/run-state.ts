import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../../shared/state-dir";

/**
 * What a foreground `npm run broker` writes next to its data, so that another command
 * (`npm run broker -- restart`) can find it and see that a restart took place.
 */
export interface BrokerRunState {
  /** The CLI process: SIGHUP asks it to restart mosquitto, SIGTERM to stop. */
  cliPid: number;
  brokerPid: number;
  url: string;
  port: number;
  /** Incremented on every (re)start. */
  generation: number;
  startedAt: string;
}

export function runStateFile(dataDir: string): string {
  return join(dataDir, "broker.json");
}

export async function writeRunState(dataDir: string, s: BrokerRunState): Promise<void> {
  await writeFileAtomic(runStateFile(dataDir), `${JSON.stringify(s, null, 2)}\n`, 0o644);
}

export async function readRunState(dataDir: string): Promise<BrokerRunState | undefined> {
  let text: string;
  try {
    text = await readFile(runStateFile(dataDir), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const v = JSON.parse(text) as Partial<BrokerRunState>;
  if (typeof v.cliPid !== "number" || typeof v.brokerPid !== "number" || typeof v.generation !== "number") {
    throw new Error(`${runStateFile(dataDir)} is not a broker run state file`);
  }
  return v as BrokerRunState;
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
