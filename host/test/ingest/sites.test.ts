import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManifestError } from "../../../manifests/src/index";
import { loadFleet } from "../../src/ingest/sites";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-sites-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const manifest = (site: string) => ({
  version: 1,
  fleet: "plant",
  sites: [{ id: site }],
  defaults: { board: "esp32-devkitc" },
  devices: [{ id: "el-1", site }],
});

describe("the fleet manifest the ingest reads", () => {
  it("gives each device's site from a valid manifest", async () => {
    const path = join(dir, "ok.json");
    await writeFile(path, JSON.stringify(manifest("north")));
    const fleet = await loadFleet(path);
    expect([...fleet.ids]).toEqual(["el-1"]);
    expect(fleet.sites.get("el-1")).toBe("north");
  });

  it("refuses a manifest whose site name would inject a point into the store", async () => {
    const path = join(dir, "inject.json");
    // Before validation this site went into the tag verbatim: the newline starts a forged reading.
    await writeFile(
      path,
      JSON.stringify(manifest("north\nelectrolyser,sensor_id=el-2,site=x purity_pct=42 1")),
    );
    await expect(loadFleet(path)).rejects.toBeInstanceOf(ManifestError);
    await expect(loadFleet(path)).rejects.toThrow(/sites\[0\]\.id/);
  });

  it("refuses a manifest that is not one (no sites, unknown fields)", async () => {
    const path = join(dir, "loose.json");
    await writeFile(path, JSON.stringify({ devices: [{ id: "el-1", site: "a b" }] }));
    await expect(loadFleet(path)).rejects.toBeInstanceOf(ManifestError);
  });
});
