/**
 * Which chip (by MAC) holds which identity: `<state>/provisioning/bindings.json`. It records the
 * certificate serial and SHA-256 fingerprint, the payload key id, the MAC and the time; never a key.
 * It is the history log (bindings replaced with --force stay under `released`); with a fleet manifest the
 * same binding is also recorded on the device's manifest entry (manifest-binding.ts).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../../shared/state-dir";
import { ProvisionError } from "./errors";

export interface BoardBinding {
  deviceId: string;
  mac: string;
  certSerial: string;
  certSha256: string;
  /** The envelope key id the board was given (= the fleet secret id for boards bound before generations). */
  keyId: number | null;
  /** The payload key generation (payload-grants.ts); absent on bindings made before generations existed. */
  keyGeneration?: number;
  chip: string;
  flashSize: number;
  nvsOffset: number;
  nvsSize: number;
  provisionedAt: string;
}

export interface BindingsFile {
  version: 1;
  boards: BoardBinding[];
  /** Bindings replaced with --force, kept for the audit trail. */
  released: (BoardBinding & { releasedAt: string; reason: string })[];
}

export function bindingsPath(stateDir: string): string {
  return join(stateDir, "provisioning", "bindings.json");
}

export async function readBindings(stateDir: string): Promise<BindingsFile> {
  const path = bindingsPath(stateDir);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, boards: [], released: [] };
    throw new ProvisionError("bad_input", `cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ProvisionError("bad_input", `${path} is not valid JSON; fix or restore it before provisioning`);
  }
  const f = parsed as Partial<BindingsFile>;
  if (f.version !== 1 || !Array.isArray(f.boards))
    throw new ProvisionError("bad_input", `${path} is not a version 1 bindings file`);
  return { version: 1, boards: f.boards, released: Array.isArray(f.released) ? f.released : [] };
}

export type BindingCheck = { ok: true; release: BoardBinding[] } | { ok: false; error: ProvisionError };

/** What a refusal needs to know about an existing binding, wherever it is recorded. */
export interface BindingLike {
  deviceId: string;
  mac: string;
  provisionedAt: string;
}

/**
 * One identity per board and one board per identity. Re-provisioning the same pair is fine (a rotated
 * certificate, a wiped board); anything else needs `force`, which releases the old bindings.
 */
export function checkBinding(
  file: BindingsFile,
  deviceId: string,
  mac: string,
  force: boolean,
): BindingCheck {
  return checkBoards(file.boards, deviceId, mac, force);
}

/** checkBinding over any list of bindings; `recordedIn` names where they come from in the refusal. */
export function checkBoards<T extends BindingLike>(
  boards: readonly T[],
  deviceId: string,
  mac: string,
  force: boolean,
  recordedIn?: string,
): { ok: true; release: T[] } | { ok: false; error: ProvisionError } {
  const byMac = boards.find((b) => b.mac === mac);
  const byId = boards.find((b) => b.deviceId === deviceId);
  const where = (b: T): string =>
    `provisioned ${b.provisionedAt}${recordedIn !== undefined ? `, per ${recordedIn}` : ""}`;
  const release: T[] = [];
  if (byMac && byMac.deviceId !== deviceId) {
    if (!force) {
      return {
        ok: false,
        error: new ProvisionError(
          "already_bound",
          `board ${mac} already holds identity "${byMac.deviceId}" (${where(byMac)}); use --force to give it "${deviceId}" instead`,
        ),
      };
    }
    release.push(byMac);
  }
  if (byId && byId.mac !== mac) {
    if (!force) {
      return {
        ok: false,
        error: new ProvisionError(
          "identity_elsewhere",
          `identity "${deviceId}" is already on board ${byId.mac} (${where(byId)}); use --force to move it to ${mac}`,
        ),
      };
    }
    release.push(byId);
  }
  return { ok: true, release };
}

export function applyBinding(
  file: BindingsFile,
  binding: BoardBinding,
  release: readonly BoardBinding[],
  now: Date,
): BindingsFile {
  const gone = new Set<BoardBinding>(release);
  const released = [
    ...file.released,
    ...release.map((b) => ({
      ...b,
      releasedAt: now.toISOString(),
      reason: `replaced by ${binding.deviceId} on ${binding.mac}`,
    })),
  ];
  const boards = file.boards.filter(
    (b) => !gone.has(b) && !(b.mac === binding.mac && b.deviceId === binding.deviceId),
  );
  boards.push(binding);
  boards.sort((a, b) => a.deviceId.localeCompare(b.deviceId));
  return { version: 1, boards, released };
}

let queue: Promise<unknown> = Promise.resolve();

/**
 * Re-reads, checks and writes under an in-process lock, so parallel boards (`--ports auto`) never lose
 * each other's binding. The file is replaced atomically; a failure leaves it untouched. `alsoRecord`
 * (the manifest) runs under the same lock after the check and before the write, so its refusal leaves
 * this file untouched too.
 */
export function recordBinding(
  stateDir: string,
  binding: BoardBinding,
  force: boolean,
  now = new Date(),
  alsoRecord?: () => Promise<void>,
): Promise<void> {
  const run = queue.then(async () => {
    const file = await readBindings(stateDir);
    const check = checkBinding(file, binding.deviceId, binding.mac, force);
    if (!check.ok) throw check.error;
    const next = applyBinding(file, binding, check.release, now);
    await alsoRecord?.();
    await writeFileAtomic(bindingsPath(stateDir), `${JSON.stringify(next, null, 2)}\n`, 0o644);
  });
  queue = run.catch(() => {});
  return run;
}
