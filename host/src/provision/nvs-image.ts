/** The identity as an NVS partition image, checked the way the firmware will read it back at boot. */
import { identityToEntries, parseIdentity, PROV_NAMESPACE } from "../../../firmware/src/identity/nvs-layout";
import type { DeviceIdentity, ProvEntry } from "../../../firmware/src/identity/nvs-layout";
import { buildNvsImage, type NvsWriteItem } from "../nvs/writer";
import { readNvsImage } from "../nvs/reader";
import type { NvsValue } from "../nvs/reader";
import { ProvisionError } from "./errors";

export interface IdentityImage {
  image: Uint8Array;
  /** Bytes of entries actually used (pages × 4096 minus free entries), for the size report. */
  usedBytes: number;
  usedEntries: number;
}

export function identityImage(identity: DeviceIdentity, boot: number, partitionSize: number): IdentityImage {
  const entries = identityToEntries(identity, boot);
  const items: NvsWriteItem[] = [{ kind: "namespace", name: PROV_NAMESPACE }, ...entries.map(toItem)];
  const image = buildNvsImage(items, partitionSize);
  // Read it back through the same path the firmware takes: decode, then parseIdentity.
  const decoded = readNvsImage(image);
  const prov = decoded.namespaces.get(PROV_NAMESPACE);
  const check = parseIdentity((k) => nvsValueForFirmware(prov?.get(k)));
  if (decoded.problems.length > 0 || !check.ok) {
    const why =
      decoded.problems.length > 0
        ? decoded.problems.join("; ")
        : check.ok
          ? ""
          : check.errors.map((e) => e.message).join("; ");
    throw new ProvisionError("bad_input", `the NVS image would not be accepted by the firmware: ${why}`);
  }
  const usedEntries = decoded.pages.reduce((n, p) => n + p.usedEntries, 0);
  return { image, usedEntries, usedBytes: usedEntries * 32 };
}

/** What Moddable's Preference.get would hand the firmware for a stored value. */
export function nvsValueForFirmware(v: NvsValue | undefined): unknown {
  if (!v) return undefined;
  if (v.type === "u8") return v.value !== 0;
  if (v.type === "i32" || v.type === "string") return v.value;
  if (v.type === "blob") return v.value.slice().buffer;
  return undefined; // other types read back as undefined in Preference
}

function toItem(e: ProvEntry): NvsWriteItem {
  switch (e.type) {
    case "u8":
      return { kind: "u8", key: e.key, value: e.value };
    case "i32":
      return { kind: "i32", key: e.key, value: e.value };
    case "string":
      return { kind: "string", key: e.key, value: e.value };
    case "blob":
      return { kind: "blob", key: e.key, value: e.value };
  }
}

/** Device id and boot counter of whatever identity a board carries now, if its NVS can be read. */
export function existingIdentity(nvs: Uint8Array): { deviceId?: string; boot?: number } {
  try {
    const prov = readNvsImage(nvs).namespaces.get(PROV_NAMESPACE);
    const id = prov?.get("device_id");
    const boot = prov?.get("boot");
    return {
      ...(id?.type === "string" ? { deviceId: id.value } : {}),
      ...(boot?.type === "i32" && boot.value >= 0 ? { boot: boot.value } : {}),
    };
  } catch {
    return {};
  }
}

/**
 * The boot counter to write. Carrying the board's own counter forward is not enough: an identity moved to
 * a wiped board would restart at 0 and reuse (boot, counter) nonces under the same payload key. Minutes
 * since the epoch exceed any counter a board reaches by booting, so the larger of the two is always fresh.
 */
export function initialBootCounter(existing: number | undefined, now: Date): number {
  return Math.max(existing ?? 0, Math.floor(now.getTime() / 60_000));
}
