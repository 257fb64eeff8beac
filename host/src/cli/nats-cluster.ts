#!/usr/bin/env node
// `npm run nats-cluster -- render-docker`: the three node configurations of docker-compose's `nats-cluster`
// profile, generated from the state folder's PKI (see host/src/broker/nats/docker.ts).
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { pkiPaths } from "../../../pki/src/paths";
import { dockerStateDir, renderDockerCluster } from "../broker/nats/docker";
import { stateDir } from "../../../shared/state-dir";

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName("npm run nats-cluster --")
    .command(
      "render-docker",
      "Write <state>/nats-cluster/docker/n1..n3.conf and the route CA from the PKI (run `npm run setup` first)",
      () => undefined,
      async () => {
        const state = stateDir();
        const users = await renderDockerCluster(state, pkiPaths(state));
        console.error(
          `nats-cluster: ${users.users.length} users, ${users.pins.length} pinned certificates, ${users.skipped.length} left out; written to ${dockerStateDir(state)}`,
        );
        for (const s of users.skipped) console.error(`  left out: ${s.kind} ${s.name}: ${s.reason}`);
      },
    )
    .demandCommand(1)
    .strict()
    .help()
    .parseAsync();
}

main().catch((err: unknown) => {
  console.error(`nats-cluster: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
