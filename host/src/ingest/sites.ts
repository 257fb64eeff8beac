// Which devices the fleet manifest lists and where each is. The manifest is validated with its
// schema first (manifests/src): a site is a known site id ([a-z0-9_-]), so no site name can carry
// line protocol of its own into the store (a newline in a tag would start a forged point).
import { loadManifest } from "../../../manifests/src/index";

/**
 * Every device id of the manifest, the site of each and its configured readings per second;
 * throws ManifestError listing every problem.
 */
export async function loadFleet(
  manifestPath: string,
): Promise<{ ids: Set<string>; sites: Map<string, string>; rates: Map<string, number> }> {
  const manifest = await loadManifest(manifestPath);
  return {
    ids: new Set(manifest.devices.map((d) => d.id)),
    sites: new Map(manifest.devices.map((d) => [d.id, d.site])),
    rates: new Map(manifest.devices.map((d) => [d.id, 1000 / d.intervalMs])),
  };
}

export async function loadSites(manifestPath: string): Promise<Map<string, string>> {
  return (await loadFleet(manifestPath)).sites;
}
