/** Runs the real provisioning CLI as a child process against a virtual board, with its own state folder. */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ensureDevPki } from "../../../pki/src/index";
import { loadOrCreatePayloadMaster } from "../../src/crypto/device-keys";

export const REPO = resolve(import.meta.dirname, "../../..");
export const CLI = join(REPO, "host/src/cli/provision.ts");
export const BROKER = "mqtts://broker.example.net:8883";

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], stateDir: string, timeoutMs = 50_000): Promise<CliRun> {
  // Without --manifest the CLI would pick up the repo's manifests/fleet.json if someone keeps one there.
  const flashing = args[0] !== "image" && args[0] !== "inspect" && args[0] !== "sim";
  const manifestArgs =
    !flashing || args.includes("--manifest") || args.includes("--no-manifest") ? [] : ["--no-manifest"];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args, ...manifestArgs], {
      cwd: REPO,
      env: { ...process.env, EST_STATE_DIR: stateDir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
      reject(new Error(`provision CLI did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/**
 * A state folder with a development PKI holding these device identities and, unless told otherwise, the
 * fleet payload secret of key id 1 (what `npm run setup` makes): provisioning refuses to create one.
 */
export async function makeState(devices: string[], opts: { payloadSecret?: boolean } = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "provision-test-"));
  await ensureDevPki({ stateDir: dir, devices });
  if (opts.payloadSecret !== false) await loadOrCreatePayloadMaster(dir, 1);
  return dir;
}

export async function writePskFile(dir: string, psk: string): Promise<string> {
  const path = join(dir, "wifi.psk");
  await writeFile(path, `${psk}\n`, { mode: 0o600 });
  return path;
}

export async function readOrNull(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return null;
  }
}
