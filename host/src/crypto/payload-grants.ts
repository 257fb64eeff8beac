/**
 * Which payload keys each device was given: `<state>/provisioning/payload-keys.json`. No key material, only
 * (key id → fleet secret id, generation) per device and each grant's state. Provisioning writes it; the ingest
 * reads it and opens a device's envelope only under a key id the device holds now (or, for a grace period,
 * the one it held before), refusing a retired one as `retired_key`.
 *
 * A field rotation (`npm run trust`) adds a key too: `rotate` grants a new generation as `pending` (the ingest
 * accepts it at once: the board seals under it from the CONNACK with its new identity, which the host does not
 * see) while the key in use stays `current`; `finish` makes the pending key current and the old one previous
 * for a grace period (readings it sealed before the switch may still be on their way), then retired.
 *
 * Nonce safety: every provisioning of an identity, and every field rotation, reserves a new generation, which is mixed into the device
 * key's HKDF info (device-keys.ts). A generation is never handed out twice, even when the provisioning that
 * reserved it fails, so two boards (or two lives of one board) never seal under the same key, whatever their
 * boot counters say.
 *
 * The rules (reserve, commit, lookup) are pure functions over the file's content; the I/O is the small part
 * at the bottom.
 */
import { readFileSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../../shared/state-dir";

/** pending: sent to the board by a field rotation not finished yet; accepted like current. */
export type GrantState = "pending" | "current" | "previous" | "retired";

export interface PayloadGrant {
  /** The envelope's key id byte for this grant. */
  keyId: number;
  /** Which fleet payload secret the key derives from (payload-master-<secretId>.key). */
  secretId: number;
  /** HKDF generation: 0 for keys issued before generations existed. */
  generation: number;
  state: GrantState;
  issuedAt: string;
  /** A `previous` grant is accepted until then. */
  retireAt?: string;
  retiredAt?: string;
  /** Why it stopped (or will stop) working: "re-provisioned", "moved to another board", "rotated". */
  reason?: string;
}

export interface DeviceGrants {
  /** The next generation to reserve; only ever grows. */
  nextGeneration: number;
  grants: PayloadGrant[];
}

export interface GrantsFile {
  version: 1;
  devices: Record<string, DeviceGrants>;
}

/** How long a re-provisioned board's previous key still opens: readings it sealed before and has not sent. */
export const DEFAULT_KEY_GRACE_MS = 7 * 86_400_000;

export function emptyGrants(): GrantsFile {
  return { version: 1, devices: {} };
}

/** The key id byte a generation gets: one that no live (current or previous) grant of the device uses. */
function freeKeyId(dev: DeviceGrants, generation: number): boolean {
  return !dev.grants.some((g) => g.state !== "retired" && g.keyId === generation % 256);
}

/**
 * Reserves the next generation of a device (returned with the file to write). Written before the board is:
 * a provisioning that then fails has used up its generation, never shared it with the next attempt.
 */
export function reserveGeneration(
  file: GrantsFile,
  deviceId: string,
  /** Key ids to keep clear of as well: the legacy key id commitGrant will record. */
  avoid: readonly number[] = [],
): { file: GrantsFile; generation: number; keyId: number } {
  const dev = file.devices[deviceId] ?? { nextGeneration: 1, grants: [] };
  let generation = Math.max(1, dev.nextGeneration);
  while (!freeKeyId(dev, generation) || avoid.includes(generation % 256)) generation++;
  const next: DeviceGrants = { ...dev, nextGeneration: generation + 1 };
  return {
    file: { ...file, devices: { ...file.devices, [deviceId]: next } },
    generation,
    keyId: generation % 256,
  };
}

export interface CommitOptions {
  secretId: number;
  generation: number;
  now: Date;
  /**
   * The identity moved to another board: the old board still holds the previous key, so it is retired at
   * once. Otherwise (the same board re-provisioned) the previous key stays for `graceMs`.
   */
  movedFromAnotherBoard: boolean;
  graceMs?: number;
  /**
   * The key id (= secret id) a device provisioned before generations existed was given, from its binding:
   * recorded as generation 0 so that it too becomes previous, then retired, instead of working forever.
   */
  legacyKeyId?: number | null;
}

/** Makes a reserved generation the device's current key; the one before becomes previous (or retired). */
export function commitGrant(file: GrantsFile, deviceId: string, o: CommitOptions): GrantsFile {
  const dev = file.devices[deviceId] ?? { nextGeneration: o.generation + 1, grants: [] };
  if (o.generation >= dev.nextGeneration && dev.grants.length > 0)
    throw new Error(`generation ${o.generation} of ${deviceId} was never reserved`);
  if (dev.grants.some((g) => g.generation === o.generation))
    throw new Error(`generation ${o.generation} of ${deviceId} is already granted`);
  const at = o.now.toISOString();
  const grace = o.graceMs ?? DEFAULT_KEY_GRACE_MS;
  const reason = o.movedFromAnotherBoard ? "moved to another board" : "re-provisioned";
  let grants = dev.grants.slice();
  if (grants.length === 0 && o.legacyKeyId !== undefined && o.legacyKeyId !== null)
    grants.push({
      keyId: o.legacyKeyId,
      secretId: o.legacyKeyId,
      generation: 0,
      state: "current",
      issuedAt: at,
    });
  grants = grants.map((g): PayloadGrant => {
    if (g.state === "previous") return { ...g, state: "retired", retiredAt: at };
    // A field rotation's key the board was sent: provisioning writes a whole new identity instead.
    if (g.state === "pending") return { ...g, state: "retired", retiredAt: at, reason };
    if (g.state !== "current") return g;
    if (o.movedFromAnotherBoard || grace <= 0) return { ...g, state: "retired", retiredAt: at, reason };
    return { ...g, state: "previous", retireAt: new Date(o.now.getTime() + grace).toISOString(), reason };
  });
  grants.push({
    keyId: o.generation % 256,
    secretId: o.secretId,
    generation: o.generation,
    state: "current",
    issuedAt: at,
  });
  return {
    ...file,
    devices: {
      ...file.devices,
      [deviceId]: { nextGeneration: Math.max(dev.nextGeneration, o.generation + 1), grants },
    },
  };
}

/**
 * A field rotation's new payload key: reserves the next generation and grants it as `pending`, next to the
 * key in use (which stays current). A device the file does not know yet (provisioned before grants, or an
 * emulated board) first gets its legacy key (key id = secret id `legacyKeyId`, generation 0) recorded as
 * current. The new key derives from the fleet secret of the key in use.
 */
export function grantPending(
  file: GrantsFile,
  deviceId: string,
  o: { now: Date; legacyKeyId: number },
): { file: GrantsFile; grant: PayloadGrant } {
  const at = o.now.toISOString();
  let dev = file.devices[deviceId] ?? { nextGeneration: 1, grants: [] };
  if (dev.grants.length === 0)
    dev = {
      ...dev,
      grants: [
        { keyId: o.legacyKeyId, secretId: o.legacyKeyId, generation: 0, state: "current", issuedAt: at },
      ],
    };
  if (dev.grants.some((g) => g.state === "pending"))
    throw new Error(`${deviceId} already has a pending payload key (finish its rotation first)`);
  const current = dev.grants.find((g) => g.state === "current");
  const reserved = reserveGeneration({ ...file, devices: { ...file.devices, [deviceId]: dev } }, deviceId);
  const grant: PayloadGrant = {
    keyId: reserved.keyId,
    secretId: current?.secretId ?? o.legacyKeyId,
    generation: reserved.generation,
    state: "pending",
    issuedAt: at,
  };
  const next = reserved.file.devices[deviceId]!;
  return {
    file: {
      ...reserved.file,
      devices: { ...reserved.file.devices, [deviceId]: { ...next, grants: [...next.grants, grant] } },
    },
    grant,
  };
}

/**
 * `trust finish`: the pending key of `generation` becomes current; the key it replaces stays usable for
 * `graceMs` (readings sealed before the board switched may still arrive) and is then refused as retired; with
 * a grace of 0 it is retired at once. An earlier previous key is retired now. No pending key of that
 * generation: the file is returned unchanged.
 */
export function promotePending(
  file: GrantsFile,
  deviceId: string,
  o: { generation: number; now: Date; graceMs: number },
): GrantsFile {
  const dev = file.devices[deviceId];
  if (!dev?.grants.some((g) => g.state === "pending" && g.generation === o.generation)) return file;
  const at = o.now.toISOString();
  const reason = "rotated";
  const grants = dev.grants.map((g): PayloadGrant => {
    if (g.state === "pending" && g.generation === o.generation) return { ...g, state: "current" };
    if (g.state === "previous") return { ...g, state: "retired", retiredAt: at };
    if (g.state !== "current") return g;
    if (o.graceMs <= 0) return { ...g, state: "retired", retiredAt: at, reason };
    return { ...g, state: "previous", retireAt: new Date(o.now.getTime() + o.graceMs).toISOString(), reason };
  });
  return { ...file, devices: { ...file.devices, [deviceId]: { ...dev, grants } } };
}

/** Retires every key of a device (its identity moved to a board that gets no payload key). */
export function retireGrants(file: GrantsFile, deviceId: string, now: Date, reason: string): GrantsFile {
  const dev = file.devices[deviceId];
  if (!dev) return file;
  const at = now.toISOString();
  const grants = dev.grants.map((g): PayloadGrant =>
    g.state === "retired" ? g : { ...g, state: "retired", retiredAt: at, reason },
  );
  return { ...file, devices: { ...file.devices, [deviceId]: { ...dev, grants } } };
}

/** What the ingest may do with (device, key id). */
export type GrantLookup =
  | { kind: "key"; secretId: number; generation: number }
  | { kind: "retired"; why: string }
  | { kind: "unknown" };

/**
 * `undefined` when the file knows nothing of the device (a board provisioned before grants existed, or an
 * emulated one): the caller falls back to key id = fleet secret id, generation 0.
 */
export function lookupGrant(
  file: GrantsFile,
  deviceId: string,
  keyId: number,
  now: number,
): GrantLookup | undefined {
  const dev = file.devices[deviceId];
  if (!dev || dev.grants.length === 0) return undefined;
  // The live grant wins over a retired one that had the same byte 256 generations ago.
  const live = dev.grants.find((g) => g.keyId === keyId && g.state !== "retired");
  if (live) {
    if (live.state === "current")
      return { kind: "key", secretId: live.secretId, generation: live.generation };
    if (live.retireAt !== undefined && Date.parse(live.retireAt) <= now)
      return {
        kind: "retired",
        why: `its grace period ended ${live.retireAt} (${live.reason ?? "replaced"})`,
      };
    return { kind: "key", secretId: live.secretId, generation: live.generation };
  }
  const dead = dev.grants.find((g) => g.keyId === keyId);
  if (dead) return { kind: "retired", why: `retired ${dead.retiredAt ?? ""} (${dead.reason ?? "replaced"})` };
  return { kind: "unknown" };
}

export function grantsPath(stateDir: string): string {
  return join(stateDir, "provisioning", "payload-keys.json");
}

function parseGrants(text: string, path: string): GrantsFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not valid JSON`);
  }
  const f = parsed as Partial<GrantsFile>;
  if (f.version !== 1 || typeof f.devices !== "object" || f.devices === null)
    throw new Error(`${path} is not a version 1 payload key file`);
  return { version: 1, devices: f.devices };
}

export async function readGrants(stateDir: string): Promise<GrantsFile> {
  const path = grantsPath(stateDir);
  try {
    return parseGrants(await readFile(path, "utf8"), path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return emptyGrants();
    throw err;
  }
}

let queue: Promise<unknown> = Promise.resolve();

/**
 * Read-modify-write under one in-process queue: parallel provisioning (`--ports auto`) must not lose a
 * reservation. (Two provisioning processes on one state folder at once are not supported, as for bindings.)
 */
export function updateGrants<T>(
  stateDir: string,
  change: (file: GrantsFile) => { file: GrantsFile; result: T },
): Promise<T> {
  const run = queue.then(async () => {
    const { file, result } = change(await readGrants(stateDir));
    await writeFileAtomic(grantsPath(stateDir), `${JSON.stringify(file, null, 2)}\n`, 0o644);
    return result;
  });
  queue = run.catch(() => {});
  return run;
}

/**
 * The ingest's view. The hot path reads no disk: the file is re-checked (one stat) on a refused key id; for
 * a device the view knows nothing of at its first message, whenever its key id changes (it was provisioned
 * or rotated: a grant was written before it could use the new key) and otherwise at most once a second; and
 * in any case at most once a second, so a key `trust finish` retires stops opening within a second although
 * the device's messages under it keep hitting the memo. So a board provisioned or rotated while the ingest
 * runs is known at its first reading under the new key.
 */
export class GrantsView {
  readonly #path: string;
  #file: GrantsFile = emptyGrants();
  #stamp = "";
  readonly #memo = new Map<string, { result: GrantLookup; until: number }>();
  /** When the file was last checked for a device it did not know: bounded by the fleet's identities. */
  readonly #checkedFor = new Map<string, { at: number; keyId: number }>();
  #checkedAt = Number.NEGATIVE_INFINITY;
  readonly #now: () => number;

  constructor(where: { stateDir: string } | { path: string }, now: () => number = Date.now) {
    this.#path = "path" in where ? where.path : grantsPath(where.stateDir);
    this.#now = now;
    this.refresh();
  }

  /** How long a usable grant stays usable without the file changing: a previous key only until its retireAt. */
  #keyUntil(deviceId: string, keyId: number): number {
    const g = this.#file.devices[deviceId]?.grants.find((x) => x.keyId === keyId && x.state !== "retired");
    return g?.state === "previous" && g.retireAt !== undefined
      ? Date.parse(g.retireAt)
      : Number.POSITIVE_INFINITY;
  }

  /** Re-reads the file if its size or mtime changed; returns whether it did. A broken file keeps the last good one. */
  refresh(): boolean {
    let stamp: string;
    try {
      const s = statSync(this.#path);
      stamp = `${s.mtimeMs}/${s.size}`;
    } catch {
      stamp = "absent";
    }
    if (stamp === this.#stamp) return false;
    try {
      this.#file =
        stamp === "absent" ? emptyGrants() : parseGrants(readFileSync(this.#path, "utf8"), this.#path);
      this.#stamp = stamp;
      this.#memo.clear();
      return true;
    } catch {
      return false;
    }
  }

  lookup(deviceId: string, keyId: number): GrantLookup | undefined {
    const now = this.#now();
    if (now - this.#checkedAt >= 1000) {
      this.#checkedAt = now;
      this.refresh();
    }
    // Memoised per (device, key id) until the file changes or a grace period ends: one map read per message.
    const memoKey = `${keyId}/${deviceId}`;
    const memo = this.#memo.get(memoKey);
    if (memo && now < memo.until) return memo.result;
    const first = lookupGrant(this.#file, deviceId, keyId, now);
    if (first?.kind === "key") {
      this.#memo.set(memoKey, { result: first, until: this.#keyUntil(deviceId, keyId) });
      return first;
    }
    if (first === undefined) {
      const at = this.#now();
      // A device that changes key id was just provisioned or rotated: look now, not within the second.
      const seen = this.#checkedFor.get(deviceId);
      if (seen && seen.keyId === keyId && at - seen.at < 1000) return first;
      this.#checkedFor.set(deviceId, { at, keyId });
    }
    if (!this.refresh()) return first;
    return lookupGrant(this.#file, deviceId, keyId, this.#now());
  }
}
