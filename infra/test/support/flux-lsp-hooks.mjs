/* global WebAssembly */
// Node module hooks that let plain Node load @influxdata/flux-lsp-browser, a wasm-bindgen
// "bundler" build: its .js files are ES modules without "type": "module", and its glue imports
// the .wasm file as an ES module (a bundler feature Node lacks without a flag).
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const PKG = "/@influxdata/flux-lsp-browser/";

export async function load(url, context, nextLoad) {
  if (!url.includes(PKG)) return nextLoad(url, context);
  if (url.endsWith(".js")) {
    return { format: "module", source: await readFile(fileURLToPath(url), "utf8"), shortCircuit: true };
  }
  if (url.endsWith(".wasm")) {
    // Instantiated synchronously while the glue module is still being linked: the glue's
    // imported functions are hoisted declarations, so they exist before its body runs, and its
    // body (which reads wasm.memory) runs only after this module has finished.
    const bytes = await readFile(fileURLToPath(url));
    const names = WebAssembly.Module.exports(new WebAssembly.Module(bytes)).map((e) => e.name);
    const source = [
      `import * as glue from "./flux-lsp-browser_bg.js";`,
      `import { readFileSync } from "node:fs";`,
      `const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(new URL(import.meta.url))),`,
      `  { "./flux-lsp-browser_bg.js": glue });`,
      ...names.map((n) => `export const ${n} = instance.exports[${JSON.stringify(n)}];`),
    ].join("\n");
    return { format: "module", source, shortCircuit: true };
  }
  return nextLoad(url, context);
}
