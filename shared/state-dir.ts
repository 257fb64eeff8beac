import { mkdir, open, rename, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";

// Below every Node part of the repository (host, pki, manifests, infra): it imports nothing of theirs, so each
// may use it without an arrow running back up (checked by host/test/architecture/dependencies.test.ts).

/** The repository root: the folder above this file (shared/). */
export function repoRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "..");
}

/**
 * Where every generated artefact lives (PKI, secrets, broker data, reports).
 * Git-ignored; overridable so tests and parallel runs never share one.
 */
export function stateDir(): string {
  return process.env.EST_STATE_DIR ? resolve(process.env.EST_STATE_DIR) : join(repoRoot(), ".state");
}

/**
 * Writes a file so that a reader sees either the old content or the new, never half:
 * a crash, a full disk or a read-only folder leaves the existing file untouched.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  const handle = await open(tmp, "wx", mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
