// The real `npm run trust` CLI as a child process, against a test's state directory.
import { spawn } from "node:child_process";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dirname, "../../../..");

export function trustCli(
  stateDir: string,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(REPO, "host/src/cli/trust.ts"), ...args], {
      cwd: REPO,
      env: { ...process.env, EST_STATE_DIR: stateDir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => done({ code, stdout, stderr }));
  });
}
