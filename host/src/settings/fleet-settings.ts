// The one fleet-wide settings file (fleet.settings.json at the repository root, or the file --settings /
// $EST_FLEET_SETTINGS names): whether the fleet seals payloads and which manifest lists its devices.
// Provisioning, the emulator, the ingest and docker-compose (which runs the ingest with --settings)
// read it, so they cannot disagree: a command-line flag that contradicts it is an error, not an override.
// Not a secret: the PKI and the payload secrets stay in the state folder.
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { repoRoot } from "../../../shared/state-dir";

export type PayloadModeName = "plain" | "encrypted";

export interface FleetSettings {
  /** The file the settings came from (absolute). */
  source: string;
  payloadMode: PayloadModeName;
  /** The fleet manifest, absolute (a relative path in the file is relative to the file's folder). */
  manifest: string;
}

export class SettingsError extends Error {
  override readonly name = "SettingsError";
}

/** The settings file a command uses: its --settings value, else $EST_FLEET_SETTINGS, else none. */
export function settingsPathFrom(flag: string | undefined): string | undefined {
  const path = flag ?? process.env.EST_FLEET_SETTINGS;
  return path ? resolve(path) : undefined;
}

/** The repository's own settings file (the development fleet's). */
export const DEFAULT_SETTINGS_PATH = join(repoRoot(), "fleet.settings.json");

const KEYS = new Set(["$comment", "payloadMode", "manifest"]);

export function parseFleetSettings(text: string, source: string): FleetSettings {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new SettingsError(`${source}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new SettingsError(`${source}: must be a JSON object`);
  const o = doc as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !KEYS.has(k));
  if (unknown.length > 0)
    throw new SettingsError(
      `${source}: unknown setting ${unknown.map((k) => `"${k}"`).join(", ")} (known: payloadMode, manifest)`,
    );
  if (o.payloadMode !== "plain" && o.payloadMode !== "encrypted")
    throw new SettingsError(`${source}: payloadMode must be "plain" or "encrypted"`);
  if (typeof o.manifest !== "string" || o.manifest === "")
    throw new SettingsError(`${source}: manifest must be the path of the fleet manifest`);
  const abs = resolve(source);
  return {
    source: abs,
    payloadMode: o.payloadMode,
    manifest: isAbsolute(o.manifest) ? o.manifest : resolve(dirname(abs), o.manifest),
  };
}

export async function loadFleetSettings(path: string): Promise<FleetSettings> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new SettingsError(
      `cannot read the fleet settings ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
  }
  return parseFleetSettings(text, path);
}

/**
 * The payload mode a command runs with: the settings' when there are settings (a flag that says otherwise
 * is refused), else the flag's, else `fallback` (undefined: the caller demands a flag).
 */
export function resolvePayloadMode(
  settings: FleetSettings | undefined,
  flag: PayloadModeName | undefined,
  flagName: string,
  fallback?: PayloadModeName,
): PayloadModeName | undefined {
  if (settings && flag !== undefined && flag !== settings.payloadMode)
    throw new SettingsError(
      `${flagName} contradicts the fleet settings ${settings.source} (payloadMode "${settings.payloadMode}"): ` +
        "change the settings file, not one command, so provisioning, the emulator and the ingest agree",
    );
  return settings?.payloadMode ?? flag ?? fallback;
}

/** Likewise for the manifest: a --manifest naming another file than the settings' is refused. */
export function resolveManifest(
  settings: FleetSettings | undefined,
  flag: string | undefined,
): string | undefined {
  if (settings && flag !== undefined && resolve(flag) !== settings.manifest)
    throw new SettingsError(
      `--manifest ${flag} contradicts the fleet settings ${settings.source} (manifest ${settings.manifest})`,
    );
  return settings?.manifest ?? (flag !== undefined ? resolve(flag) : undefined);
}
