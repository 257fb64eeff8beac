// Which devices the fleet manifest lists (JSON or YAML: `devices: [{id, site}]`) and where each is.
// Only those two fields are read here; validating the manifest is the manifest tooling's job.
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";

/** Every device id of the manifest and the site of each that has one. */
export async function loadFleet(manifestPath: string): Promise<{ ids: Set<string>; sites: Map<string, string> }> {
  const text = await readFile(manifestPath, "utf8");
  const doc = (manifestPath.endsWith(".json") ? JSON.parse(text) : parseYaml(text)) as unknown;
  const devices = typeof doc === "object" && doc !== null ? (doc as { devices?: unknown }).devices : undefined;
  if (!Array.isArray(devices)) throw new Error(`${manifestPath}: no "devices" list`);
  const ids = new Set<string>();
  const sites = new Map<string, string>();
  for (const d of devices as unknown[]) {
    if (typeof d !== "object" || d === null) continue;
    const { id, site } = d as { id?: unknown; site?: unknown };
    if (typeof id !== "string") continue;
    ids.add(id);
    if (typeof site === "string" && site !== "") sites.set(id, site);
  }
  return { ids, sites };
}

export async function loadSites(manifestPath: string): Promise<Map<string, string>> {
  return (await loadFleet(manifestPath)).sites;
}
