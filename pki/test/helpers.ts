import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export async function tempStateDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "est-pki-test-"));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Runs a real binary; a missing one is a failure with a clear message, never a skip. */
export async function tool(
  cmd: string,
  args: string[],
  o: { allowFail?: boolean; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(cmd, args, { env: o.env ?? process.env, cwd: o.cwd, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { code?: number | string; stdout?: string; stderr?: string };
    if (e.code === "ENOENT") throw new Error(`required binary "${cmd}" is not installed`);
    if (!o.allowFail) throw new Error(`${cmd} ${args.join(" ")} failed: ${e.stderr ?? e.message}`);
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** Path → sha256 and mode of every file under dir: "state untouched" means this did not change. */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else
        out[p.slice(dir.length)] = `${createHash("sha256")
          .update(await readFile(p))
          .digest("hex")} ${((await stat(p)).mode & 0o777).toString(8)}`;
    }
  };
  await walk(dir);
  return out;
}
