// Which site each board is at, from the fleet manifest (JSON or YAML: `devices: [{id, site}]`).
// Only those two fields are read here; validating the manifest is the manifest tooling's job.
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";

export async function loadSites(manifestPath: string): Promise<Map<string, string>> {
  const text = await readFile(manifestPath, "utf8");
  const doc = (manifestPath.endsWith(".json") ? JSON.parse(text) : parseYaml(text)) as unknown;
  const sites = new Map<string, string>();
  const devices =
    typeof doc === "object" && doc !== null ? (doc as { devices?: unknown }).devices : undefined;
  if (!Array.isArray(devices)) throw new Error(`${manifestPath}: no "devices" list`);
  for (const d of devices as unknown[]) {
    if (typeof d !== "object" || d === null) continue;
    const { id, site } = d as { id?: unknown; site?: unknown };
    if (typeof id === "string" && typeof site === "string" && site !== "") sites.set(id, site);
  }
  return sites;
}
