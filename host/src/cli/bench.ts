#!/usr/bin/env node
// `npm run bench -- <name> [options]`: each benchmark lives in host/src/bench/<name>.ts and prints its figures.
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const benchDir = join(dirname(fileURLToPath(import.meta.url)), "../bench");
const available = readdirSync(benchDir)
  .filter((f) => f.endsWith(".ts"))
  .map((f) => f.replace(/\.ts$/, ""))
  .sort();

const [name, ...rest] = process.argv.slice(2);
if (!name || name === "--help" || name === "-h") {
  console.log(
    `Usage: npm run bench -- <name> [options]\n\nBenchmarks: ${available.join(", ")}\n\n` +
      "Each prints its figures; `npm run bench -- <name> --help` lists its options.",
  );
  process.exit(name ? 0 : 1);
}
if (!available.includes(name)) {
  console.error(`bench: unknown benchmark "${name}" (available: ${available.join(", ")})`);
  process.exit(2);
}
const mod = (await import(`../bench/${name}.ts`)) as { run: (argv: string[]) => Promise<void> };
try {
  await mod.run(rest);
} catch (err) {
  console.error(`bench ${name}: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
