/**
 * The Moddable Linux simulator's stand-in for NVS: its Preference module (modules/files/preference/lin,
 * SDK 8.2) keeps every domain in one JSON file, `<file root>/modpreferences.json` (/tmp on Linux), with
 * blobs as `{"buffer": "1,2,3"}` and other values as JSON. The identity goes in exactly as the NVS image
 * gets it (identityToEntries), so a simulated board reads what a provisioned ESP32 reads.
 */
import { readFile } from "node:fs/promises";
import { PROV_NAMESPACE, identityToEntries, parseIdentity } from "../../../firmware/src/identity/nvs-layout";
import type { DeviceIdentity, ProvEntry } from "../../../firmware/src/identity/nvs-layout";
import { ProvisionError } from "./errors";

export const SIMULATOR_PREFERENCES = "/tmp/modpreferences.json";

type PreferenceValue = boolean | number | string | { buffer: string };
export type PreferenceFile = Record<string, Record<string, PreferenceValue>>;

/** The file's current content, {} when absent; a damaged file is an error (it may hold other apps' data). */
export async function readPreferenceFile(path: string): Promise<PreferenceFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new ProvisionError(
      "bad_input",
      `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) return parsed as PreferenceFile;
  } catch {
    // reported below
  }
  throw new ProvisionError(
    "bad_input",
    `${path} is not a Moddable preference file (a JSON object of domains)`,
  );
}

/** The boot counter the simulated board last stored, if any. */
export function simulatorBoot(file: PreferenceFile): number | undefined {
  const v = file[PROV_NAMESPACE]?.boot;
  return typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : undefined;
}

/**
 * `file` with its `prov` domain replaced by the identity (other domains kept), checked by reading it back
 * the way the simulator's Preference.get returns values.
 */
export function withIdentity(file: PreferenceFile, identity: DeviceIdentity, boot: number): PreferenceFile {
  const domain: Record<string, PreferenceValue> = {};
  for (const e of identityToEntries(identity, boot)) domain[e.key] = preferenceValue(e);
  const back = parseIdentity((k) => {
    const v = domain[k];
    return v !== null && typeof v === "object" ? Uint8Array.from(v.buffer.split(",").map(Number)).buffer : v;
  });
  if (!back.ok)
    throw new ProvisionError(
      "bad_input",
      `the simulator would not accept this identity: ${back.errors.map((e) => e.message).join("; ")}`,
    );
  return { ...file, [PROV_NAMESPACE]: domain };
}

function preferenceValue(e: ProvEntry): PreferenceValue {
  switch (e.type) {
    case "u8":
      return e.value !== 0;
    case "i32":
    case "string":
      return e.value;
    case "blob":
      return { buffer: Array.from(e.value).join(",") };
  }
}
