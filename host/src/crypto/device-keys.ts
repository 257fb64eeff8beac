// How the ingest gets device keys: it holds one 32-byte fleet payload secret per secret id,
// and every device key is HKDF-SHA256(secret, salt, info = device id [|| 0x00 || generation]).
// Provisioning writes the derived key (never the secret) into the board's NVS. Every provisioning
// of an identity takes a new generation (payload-grants.ts), so a re-provisioned identity never
// shares a key, and so never a GCM nonce, with what it sealed before. Generation 0 is the key
// boards provisioned before generations existed carry (info = device id alone).
import { hkdfSync, randomBytes } from "node:crypto";
import { link, mkdir, open, readdir, readFile, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { KeyLookup } from "../../../firmware/src/envelope/envelope";
import type { GrantLookup } from "./payload-grants";

export const PAYLOAD_KEY_SALT = "electrolyser-telemetry/payload-key/v1";
export const PAYLOAD_MASTER_BYTES = 32;

export function deriveDeviceKey(master: Uint8Array, sensorId: string, generation = 0): Uint8Array {
  if (master.length !== PAYLOAD_MASTER_BYTES) throw new RangeError("payload master secret must be 32 bytes");
  if (!Number.isInteger(generation) || generation < 0 || generation > 0xffff_ffff)
    throw new RangeError(`key generation ${generation} is not in 0..2^32-1`);
  return new Uint8Array(
    hkdfSync("sha256", master, Buffer.from(PAYLOAD_KEY_SALT), keyInfo(sensorId, generation), 32),
  );
}

/**
 * Device ids never contain NUL, so `id || 0x00 || u32be(generation)` can never equal another id's info, or
 * the bare id of generation 0: distinct (device, generation) pairs always get distinct HKDF inputs.
 */
function keyInfo(sensorId: string, generation: number): Buffer {
  const id = Buffer.from(sensorId, "utf8");
  if (generation === 0) return id;
  const out = Buffer.alloc(id.length + 5);
  id.copy(out, 0);
  out[id.length] = 0;
  out.writeUInt32BE(generation, id.length + 1);
  return out;
}

export function payloadMasterPath(stateDir: string, keyId: number): string {
  return join(stateDir, "secrets", `payload-master-${keyId}.key`);
}

function checkKeyId(keyId: number): void {
  if (!Number.isInteger(keyId) || keyId < 0 || keyId > 255)
    throw new RangeError(`key id ${keyId} is not in 0..255`);
}

export async function loadPayloadMaster(stateDir: string, keyId: number): Promise<Uint8Array> {
  checkKeyId(keyId);
  const path = payloadMasterPath(stateDir, keyId);
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      `cannot read payload secret ${keyId} at ${path} (${code ?? "error"}); run \`npm run setup\``,
    );
  }
  if (data.length !== PAYLOAD_MASTER_BYTES)
    throw new Error(`payload secret ${path} is ${data.length} bytes, expected ${PAYLOAD_MASTER_BYTES}`);
  return new Uint8Array(data);
}

/**
 * Creates the secret at random (0600) on first use; never overwrites an existing one. Safe under
 * concurrency: the new secret is written to a private temporary file and published with `link`,
 * which fails with EEXIST if another caller got there first; the loser then reads the winner's
 * secret, so every caller on one host gets the same fleet secret (a rename would let the last
 * writer win after earlier callers had already derived keys from theirs).
 */
export async function loadOrCreatePayloadMaster(stateDir: string, keyId: number): Promise<Uint8Array> {
  checkKeyId(keyId);
  const path = payloadMasterPath(stateDir, keyId);
  if (await payloadMasterExists(stateDir, keyId)) return loadPayloadMaster(stateDir, keyId); // a damaged secret is refused, never replaced
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  const handle = await open(tmp, "wx", 0o600);
  try {
    await handle.writeFile(randomBytes(PAYLOAD_MASTER_BYTES));
    await handle.sync();
    await handle.close();
    await link(tmp, path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
    });
  } finally {
    await handle.close().catch(() => {});
    await rm(tmp, { force: true });
  }
  return loadPayloadMaster(stateDir, keyId);
}

export async function payloadMasterExists(stateDir: string, keyId: number): Promise<boolean> {
  try {
    await stat(payloadMasterPath(stateDir, keyId));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/** Every payload secret present, by key id: what an ingest needs to open any device's envelope. */
export async function loadPayloadKeyring(stateDir: string): Promise<Map<number, Uint8Array>> {
  const ring = new Map<number, Uint8Array>();
  let names: string[] = [];
  try {
    names = await readdir(join(stateDir, "secrets"));
  } catch {
    return ring;
  }
  for (const name of names) {
    const m = /^payload-master-(\d{1,3})\.key$/.exec(name);
    if (m) ring.set(Number(m[1]), await loadPayloadMaster(stateDir, Number(m[1])));
  }
  return ring;
}

/** Where the cache learns which (secret, generation) a device's key id stands for. */
export interface GrantSource {
  /** `undefined`: nothing recorded for the device, so key id = fleet secret id, generation 0 (older boards). */
  lookup(deviceId: string, keyId: number): GrantLookup | undefined;
}

/** Device keys are derived once per (secret, generation, device) and cached: HKDF per message would dominate the ingest. */
export class DeviceKeyCache {
  readonly #ring: Map<number, Uint8Array>;
  readonly #grants: GrantSource | undefined;
  readonly #cache = new Map<string, Uint8Array>();
  constructor(ring: Map<number, Uint8Array>, grants?: GrantSource) {
    this.#ring = ring;
    this.#grants = grants;
  }
  keyFor(keyId: number, sensorId: string): KeyLookup {
    const grant = this.#grants?.lookup(sensorId, keyId);
    if (grant?.kind === "unknown") return undefined;
    if (grant?.kind === "retired") return { retired: grant.why };
    const secretId = grant ? grant.secretId : keyId;
    const generation = grant ? grant.generation : 0;
    const id = `${secretId}/${generation}/${sensorId}`;
    let key = this.#cache.get(id);
    if (!key) {
      const master = this.#ring.get(secretId);
      if (!master) return undefined;
      key = deriveDeviceKey(master, sensorId, generation);
      this.#cache.set(id, key);
    }
    return key;
  }
}
