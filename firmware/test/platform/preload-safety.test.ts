/**
 * On XS, mcconfig preloads the firmware's modules: everything a module creates while it loads is frozen into
 * flash with it. A buffer or collection made at module scope and written later works under Node and throws on
 * the board; on the Linux simulator a plant model whose converters were made at load time faulted every
 * channel of every reading ("read-only buffer (in setFloat32)"). This test loads every module of firmware/src
 * with the buffer and collection constructors instrumented and names each one made at load time.
 */
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = join(import.meta.dirname, "../../src");

/** Made at load time and only ever read: safe in flash. Each entry says why. */
const READ_ONLY_AT_LOAD: Record<string, string> = {
  // Register code tables, looked up and never written (typed ReadonlyMap).
  "drivers/ads1115.ts:Map": "PGA and data-rate code tables",
  // The CRC-32 lookup table, filled by the initialiser that makes it and read ever after.
  "util/crc32.ts:Uint32Array": "CRC-32 table",
};

const CONSTRUCTORS = [
  "ArrayBuffer",
  "DataView",
  "Uint8Array",
  "Uint16Array",
  "Uint32Array",
  "Int8Array",
  "Int16Array",
  "Int32Array",
  "Float32Array",
  "Float64Array",
  "Map",
  "Set",
  "WeakMap",
] as const;

function modules(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? modules(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** The firmware/src module whose own code called a constructor (not the module loader's), from the stack. */
function creator(stack: string): string | undefined {
  const frames = stack.split("\n").slice(1);
  // frames[0] is the constructor trap below; frames[1] is whoever called `new`.
  const m = /\(?((?:file:\/\/)?\/[^():]+\.ts):\d+:\d+\)?$/.exec(frames[1]?.trim() ?? "");
  const path = m?.[1]?.replace(/^file:\/\//, "");
  return path?.startsWith(SRC) ? relative(SRC, path) : undefined;
}

async function containersMadeAtLoad(files: string[]): Promise<string[]> {
  const g = globalThis as unknown as Record<string, unknown>;
  const originals = new Map(CONSTRUCTORS.map((name) => [name, g[name]] as const));
  const made = new Set<string>();
  for (const name of CONSTRUCTORS) {
    g[name] = new Proxy(originals.get(name) as new (...args: unknown[]) => object, {
      construct(target, args, newTarget) {
        const where = creator(new Error().stack ?? "");
        if (where) made.add(`${where}:${name}`);
        return Reflect.construct(target, args, newTarget) as object;
      },
    });
  }
  try {
    for (const f of files) await import(f);
  } finally {
    for (const [name, ctor] of originals) g[name] = ctor;
  }
  return [...made].sort();
}

describe("firmware modules and XS preloading", () => {
  it("finds a buffer made at module scope (the check can fail)", async () => {
    const made = (
      await containersMadeAtLoad([join(import.meta.dirname, "fixtures/module-scope-buffer.ts")])
    ).filter((m) => !(m in READ_ONLY_AT_LOAD));
    // The fixture lives outside firmware/src, so it is named by the helper it calls.
    expect(made).toEqual([
      "plant/instrument-signals.ts:ArrayBuffer",
      "plant/instrument-signals.ts:DataView",
      "plant/instrument-signals.ts:Uint16Array",
    ]);
  });

  it("no module of firmware/src makes a writable buffer or collection while it loads", async () => {
    const files = modules(SRC);
    expect(files.length).toBeGreaterThan(40);
    const made = await containersMadeAtLoad(files);
    expect(made.filter((m) => !(m in READ_ONLY_AT_LOAD))).toEqual([]);
  });
});
