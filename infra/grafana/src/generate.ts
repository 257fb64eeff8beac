#!/usr/bin/env node
// `npm run dashboards`: writes the Grafana dashboards and alert rules generated from infra/grafana/src.
// `npm run dashboards -- --check` writes nothing and exits 1 when a committed file differs.
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { writeFileAtomic } from "../../../shared/state-dir";
import { generatedFiles } from "./outputs";

const GRAFANA_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");

async function readOrEmpty(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return "";
  }
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName("npm run dashboards --")
    .usage(
      "$0 [--check]\n\nGenerates infra/grafana/dashboards/*/*.json and infra/grafana/provisioning/*/alerting/*.yaml.",
    )
    .option("check", {
      type: "boolean",
      default: false,
      describe: "Only compare with the files on disk; exit 1 if stale",
    })
    .strict()
    .help()
    .parseAsync();

  const stale: string[] = [];
  for (const f of generatedFiles()) {
    const path = join(GRAFANA_DIR, f.path);
    if ((await readOrEmpty(path)) === f.content) continue;
    stale.push(f.path);
    if (!argv.check) {
      await writeFileAtomic(path, f.content, 0o644);
      console.log(`wrote infra/grafana/${f.path}`);
    }
  }
  if (argv.check && stale.length > 0) {
    console.error(`dashboards: stale, run \`npm run dashboards\`: ${stale.join(", ")}`);
    process.exit(1);
  }
  if (stale.length === 0) console.log("dashboards: all generated files are up to date");
}

main().catch((err: unknown) => {
  console.error(`dashboards: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
