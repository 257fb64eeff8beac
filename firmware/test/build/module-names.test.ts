// What tsc and vitest cannot see: under XS a module is found by the name a manifest gives it, not by its file.
// A relative import resolves against the importing module's name, so every relative import of every module the
// firmware's manifests declare must name a module they declare too, on each platform. (A key-request module
// declared as `key-request` while main.ts imported `./native/key-request/key-request` aborted the simulator at
// boot with `module not found`, and every Node test passed.)
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, posix, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const FIRMWARE = resolve(import.meta.dirname, "../..");
const PLATFORMS = ["esp32", "lin"] as const;

interface Manifest {
  include?: string[];
  modules?: Record<string, string | string[]>;
  platforms?: Record<string, { modules?: Record<string, string | string[]> }>;
}

/** Module name → source file, for one platform, from the manifest and its local includes. */
function declaredModules(
  platform: string,
  manifestPath = join(FIRMWARE, "manifest.json"),
): Map<string, string> {
  const out = new Map<string, string>();
  const m = JSON.parse(readFileSync(manifestPath, "utf8")) as Manifest;
  const dir = dirname(manifestPath);
  for (const inc of m.include ?? [])
    if (!inc.startsWith("$(")) for (const [k, v] of declaredModules(platform, join(dir, inc))) out.set(k, v);
  for (const table of [m.modules, m.platforms?.[platform]?.modules])
    for (const [name, target] of Object.entries(table ?? {})) {
      if (typeof target !== "string" || target.startsWith("$(")) continue; // the SDK's own modules
      if (name.endsWith("*")) {
        // "src/app/*": "./src/app/*" (or "*": "./main"): every source file of that folder under the prefix.
        const prefix = name.slice(0, -1);
        const folder = join(dir, dirname(target));
        const files = target.endsWith("*")
          ? readdirSync(folder).filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith(".d.ts"))
          : [target.split("/").pop()! + ".ts"];
        for (const f of files) out.set(prefix + f.replace(/\.(ts|js)$/, ""), join(folder, f));
      } else out.set(name, sourceOf(join(dir, target)));
    }
  return out;
}

function sourceOf(pathWithoutExtension: string): string {
  for (const ext of [".ts", ".js"]) {
    try {
      readFileSync(pathWithoutExtension + ext);
      return pathWithoutExtension + ext;
    } catch {
      // try the next extension
    }
  }
  throw new Error(`no source for ${pathWithoutExtension}`);
}

/** Specifiers of the imports XS will load: `import type` and `export type … from` are erased by tsc. */
function runtimeImports(source: string): string[] {
  const out: string[] = [];
  const re = /^\s*(import|export)\s+(type\s+)?([^;]*?\s+from\s+)?["']([^"']+)["']/gm;
  for (let m = re.exec(source); m; m = re.exec(source)) if (!m[2]) out.push(m[4]!);
  return out;
}

describe("firmware module names", () => {
  for (const platform of PLATFORMS)
    it(`every relative import names a module the manifests declare (${platform})`, () => {
      const modules = declaredModules(platform);
      expect(modules.has("main")).toBe(true);
      const unresolved: string[] = [];
      let checked = 0;
      for (const [name, file] of modules) {
        for (const spec of runtimeImports(readFileSync(file, "utf8"))) {
          if (!spec.startsWith(".")) continue; // the SDK's modules, and ours by absolute name (board/platform)
          const target = posix.normalize(posix.join(posix.dirname(name), spec));
          checked++;
          if (!modules.has(target)) unresolved.push(`${name} imports "${spec}" → "${target}", not declared`);
        }
      }
      expect(unresolved).toEqual([]);
      expect(checked).toBeGreaterThan(100); // the walk saw the app, not an empty set
    });
});
