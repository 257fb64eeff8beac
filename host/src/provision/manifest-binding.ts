/**
 * The fleet manifest as provisioning sees it: the devices to hand out in order, and on each device the
 * board (MAC) that holds its identity (`provisioning`). Read before a board is touched; written only
 * after the board is written and checked, atomically, so a failed run leaves the file byte-identical.
 */
import { readFile, stat } from "node:fs/promises";
import {
  formatOf,
  ManifestError,
  parseManifest,
  setProvisioning,
  type DeviceProvisioning,
  type DeviceSpec,
  type FleetManifest,
} from "../../../manifests/src/index";
import { writeFileAtomic } from "../../../shared/state-dir";
import { checkBoards, type BindingLike, type BoardBinding } from "./bindings";
import { ProvisionError } from "./errors";

export interface FleetManifestFile {
  path: string;
  manifest: FleetManifest;
}

export async function readManifestFile(path: string): Promise<{ text: string; file: FleetManifestFile }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new ProvisionError(
      "bad_input",
      `cannot read the manifest ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  try {
    return { text, file: { path, manifest: parseManifest(text, formatOf(path), path) } };
  } catch (err) {
    if (err instanceof ManifestError) throw new ProvisionError("bad_input", err.message);
    throw err;
  }
}

export function manifestDevice(m: FleetManifestFile, deviceId: string): DeviceSpec {
  const device = m.manifest.devices.find((d) => d.id === deviceId);
  if (!device) {
    const ids = m.manifest.devices.map((d) => d.id);
    const listed =
      ids.length === 0
        ? "it lists none"
        : `it lists ${ids.slice(0, 5).join(", ")}${ids.length > 5 ? `, … (${ids.length})` : ""}`;
    throw new ProvisionError(
      "no_device",
      `device "${deviceId}" is not in the manifest ${m.path} (${listed}); add it there or pass another --manifest`,
    );
  }
  return device;
}

/** The manifest's bindings in the shape the refusals take. */
export function manifestBoards(m: FleetManifest): (BindingLike & { record: DeviceProvisioning })[] {
  return m.devices.flatMap((d) =>
    d.provisioning
      ? [
          {
            deviceId: d.id,
            mac: d.provisioning.mac,
            provisionedAt: d.provisioning.at,
            record: d.provisioning,
          },
        ]
      : [],
  );
}

export function provisioningRecord(b: BoardBinding): DeviceProvisioning {
  return {
    mac: b.mac,
    certSerial: b.certSerial,
    certSha256: b.certSha256,
    keyId: b.keyId,
    at: b.provisionedAt,
  };
}

/**
 * Re-reads the manifest (another board may have been recorded since), refuses a conflicting binding unless
 * `force`, and records this one: set on its device, removed from a device whose board now holds another
 * identity. Callers serialise calls (recordBinding's lock).
 */
export async function bindInManifest(path: string, binding: BoardBinding, force: boolean): Promise<void> {
  const { text, file } = await readManifestFile(path);
  manifestDevice(file, binding.deviceId);
  const check = checkBoards(manifestBoards(file.manifest), binding.deviceId, binding.mac, force, path);
  if (!check.ok) throw check.error;
  const changes = new Map<string, DeviceProvisioning | null>();
  for (const b of check.release) if (b.deviceId !== binding.deviceId) changes.set(b.deviceId, null);
  changes.set(binding.deviceId, provisioningRecord(binding));
  let next: string;
  try {
    next = setProvisioning(text, formatOf(path), changes, path);
  } catch (err) {
    if (err instanceof ManifestError) throw new ProvisionError("bad_input", err.message);
    throw err;
  }
  if (next === text) return;
  // Keep the file's permissions: it is the user's file, not ours.
  const mode = (await stat(path)).mode & 0o777;
  await writeFileAtomic(path, next, mode);
}
