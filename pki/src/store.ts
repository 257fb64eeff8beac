import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, link, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { writeFileAtomic } from "../../shared/state-dir";
import { PkiError, ioError } from "./errors";

export const KEY_MODE = 0o600;
export const PUBLIC_MODE = 0o644;

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw ioError("read", path, err);
  }
}

export async function ensureDir(path: string, mode = 0o755): Promise<void> {
  try {
    await mkdir(path, { recursive: true, mode });
    // mkdir's mode only applies to folders it creates; a private folder must stay private.
    if (mode === 0o700) await chmod(path, mode);
  } catch (err) {
    throw ioError("create folder", path, err);
  }
}

/**
 * Writes a file that must not exist yet: the content goes to a temporary file first and is then
 * hard-linked into place, which fails atomically if the target appeared meanwhile. So a key is never
 * half-written and never silently replaced, even by a concurrent run.
 */
export async function writeNew(path: string, data: Uint8Array | string, mode: number): Promise<void> {
  await ensureDir(dirname(path));
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const handle = await open(tmp, "wx", mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      throw new PkiError("exists", `${path} already exists; refusing to overwrite it (use --force)`);
    }
    throw ioError("write", path, err);
  } finally {
    await rm(tmp, { force: true });
  }
}

export interface FileWrite {
  path: string;
  data: Uint8Array | string;
  mode: number;
  /** "new" refuses an existing file; "replace" swaps it atomically. */
  how: "new" | "replace";
}

/** Above this many files one syncfs(2) for the batch is cheaper than an fsync(2) per file. */
const SYNC_PER_FILE_MAX = 8;

/**
 * Writes several files so that a failure (disk full, read-only folder, a file that appeared) leaves
 * the existing state as it was: every file is first written under a temporary name and made durable,
 * and only when all of them are on disk are they moved into place. A "new" file that already exists
 * is refused before anything is written.
 *
 * Durability costs one fsync per file for small batches. For bulk issuance (thousands of files) that
 * alone took seconds on a busy disk, so a large batch is written without fsync and then flushed with a
 * single `sync --file-system` (syncfs on the folder's file system) before anything is renamed.
 */
export async function writeFiles(files: readonly FileWrite[], o: { precheck?: boolean } = {}): Promise<void> {
  // The early check only saves writing a batch that would be refused: the hard link below refuses an
  // existing file anyway, and the batch is then rolled back. Bulk issuance, which checked under the
  // CA lock already, skips it.
  if (o.precheck ?? true) {
    throwFirst(
      await settleInBatches(
        files.map((f) => async () => {
          if (f.how === "new" && (await exists(f.path))) {
            throw new PkiError("exists", `${f.path} already exists; refusing to overwrite it (use --force)`);
          }
        }),
      ),
    );
  }
  const perFile = files.length <= SYNC_PER_FILE_MAX;
  const staged: { file: FileWrite; tmp: string }[] = [];
  const committed: string[] = [];
  try {
    throwFirst(
      await settleInBatches([...new Set(files.map((f) => dirname(f.path)))].map((d) => () => ensureDir(d))),
    );
    // 16 at a time: the libuv pool overlaps them, and thousands of files stay far below the open-file limit.
    throwFirst(
      await settleInBatches(
        files.map((file) => async () => {
          const tmp = `${file.path}.${randomBytes(6).toString("hex")}.tmp`;
          const handle = await open(tmp, "wx", file.mode).catch((err: unknown) => {
            throw ioError("write", file.path, err);
          });
          staged.push({ file, tmp });
          try {
            await handle.writeFile(file.data);
            if (perFile) await handle.sync();
          } catch (err) {
            throw ioError("write", file.path, err);
          } finally {
            await handle.close();
          }
        }),
      ),
    );
    if (!perFile) await syncFileSystem(staged.map((s) => s.tmp));
    throwFirst(
      await settleInBatches(
        staged.map(({ file, tmp }) => async () => {
          try {
            if (file.how === "new") await link(tmp, file.path);
            else await rename(tmp, file.path);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === "EEXIST") {
              throw new PkiError(
                "exists",
                `${file.path} already exists; refusing to overwrite it (use --force)`,
              );
            }
            throw ioError("write", file.path, err);
          }
          if (file.how === "new") {
            committed.push(file.path);
            await rm(tmp, { force: true });
          }
        }),
      ),
    );
  } catch (err) {
    // Files this call created are removed again. Renames over existing files are not undone, but they
    // only start once everything is safely on disk, so a full disk never gets that far.
    await Promise.all(committed.map((p) => rm(p, { force: true })));
    throw err;
  } finally {
    await Promise.all(staged.map(({ tmp }) => rm(tmp, { force: true })));
  }
}

/** Runs tasks `width` at a time and reports every outcome, so nothing is still running when a caller cleans up. */
async function settleInBatches(
  tasks: (() => Promise<void>)[],
  width = 16,
): Promise<PromiseSettledResult<void>[]> {
  const results: PromiseSettledResult<void>[] = new Array<PromiseSettledResult<void>>(tasks.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++;
      try {
        await (tasks[i] as () => Promise<void>)();
        results[i] = { status: "fulfilled", value: undefined };
      } catch (reason) {
        results[i] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, tasks.length) }, lane));
  return results;
}

function throwFirst(results: PromiseSettledResult<void>[]): void {
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/**
 * Makes the given (already closed) files durable: one syncfs through coreutils' `sync -f` where it
 * exists (Node has no syncfs binding), an fsync per file otherwise. A write-back error is an error.
 */
async function syncFileSystem(paths: string[]): Promise<void> {
  const first = paths[0];
  if (first === undefined) return;
  const viaSync = await new Promise<"ok" | "missing">((resolve, reject) => {
    execFile("sync", ["--file-system", first], (err) => {
      if (!err) return resolve("ok");
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return resolve("missing");
      reject(ioError("flush", dirname(first), err));
    });
  });
  if (viaSync === "ok") return;
  throwFirst(
    await settleInBatches(
      paths.map((p) => async () => {
        const h = await open(p, "r+");
        try {
          await h.sync();
        } finally {
          await h.close();
        }
      }),
    ),
  );
}

/** Replaces (or creates) a file atomically: readers see the old or the new content, never half. */
export async function writeReplace(path: string, data: Uint8Array | string, mode: number): Promise<void> {
  try {
    await writeFileAtomic(path, data, mode);
  } catch (err) {
    throw ioError("write", path, err);
  }
}

export async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new PkiError("not_found", `${what} not found: ${path}`);
    throw ioError("read", path, err);
  }
}

export async function readBytes(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new PkiError("not_found", `${what} not found: ${path}`);
    throw ioError("read", path, err);
  }
}

/**
 * A lock file next to the CA database so two `pki` runs cannot interleave issuance and lose
 * records. A lock left behind by a process that no longer exists is taken over.
 */
export async function withLock<T>(lockPath: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  await ensureDir(dirname(lockPath), 0o700);
  for (;;) {
    try {
      const handle = await open(lockPath, "wx", KEY_MODE);
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw ioError("create lock", lockPath, err);
      const holder = Number((await readFile(lockPath, "utf8").catch(() => "")).trim());
      if (holder > 0 && holder !== process.pid && !isAlive(holder)) {
        await rm(lockPath, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new PkiError("locked", `the CA is busy (lock ${lockPath} held by process ${holder || "?"})`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockPath, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
