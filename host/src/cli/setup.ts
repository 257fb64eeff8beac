#!/usr/bin/env node
// `npm run setup`: everything docker compose and the local stack need that must not be in git:
// random InfluxDB/Grafana secrets in `.env` (0600) at the repository root, the dev PKI and the
// fleet's payload secret under the state folder.
import { chmod, readFile } from "node:fs/promises";
import { isAbsolute, join, relative } from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { mergeEnv, parseEnv } from "../setup/env-file";
import { prepareState } from "../setup/prepare";
import { repoRoot, stateDir, writeFileAtomic } from "../../../shared/state-dir";

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName("npm run setup --")
    .usage(
      "$0 [--env-path PATH]\n\nCreates (or completes) .env with random secrets, the dev PKI and the payload secret.\n" +
        "Existing values, keys and certificates are kept. The state folder is $EST_STATE_DIR or <repo>/.state.",
    )
    .option("env-path", {
      type: "string",
      default: join(repoRoot(), ".env"),
      describe: "The compose .env file to write",
    })
    .strict()
    .help()
    .parseAsync();

  const state = stateDir();
  const log = (line: string) => console.log(`setup: ${line}`);
  await prepareState(state, log);

  const envPath = argv["env-path"];
  const previous = await readIfExists(envPath);
  // docker compose resolves a relative EST_STATE_DIR against the compose file's folder (the repo).
  const rel = relative(repoRoot(), state);
  const stateForCompose = !rel.startsWith("..") && !isAbsolute(rel) ? `./${rel}` : state;
  const merged = mergeEnv(parseEnv(previous ?? ""), undefined, { EST_STATE_DIR: stateForCompose });
  await writeFileAtomic(envPath, merged.text, 0o600);
  await chmod(envPath, 0o600);
  log(
    `${envPath}: ${merged.created.length ? `generated ${merged.created.join(", ")}` : "nothing new"}` +
      `${merged.kept.length ? `; kept ${merged.kept.length} existing value(s)` : ""} (mode 0600)`,
  );
  log("done. Next: `docker compose up -d`, or without Docker: `npm run stack`");
}

main().catch((err: unknown) => {
  console.error(`setup: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
