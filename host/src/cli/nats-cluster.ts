#!/usr/bin/env node
// `npm run nats-cluster -- render-docker | prepare-jetstream`: docker-compose's `nats-cluster` profile — the three
// node configurations and NATS-port identities generated from the state folder's PKI (host/src/broker/nats/docker.ts),
// then `$MQTT_msgs` and the ingest durables on the running nodes (host/src/broker/nats/prepare-jetstream.ts).
import { join } from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { pkiPaths } from "../../../pki/src/paths";
import {
  DOCKER_INGEST_WORKERS,
  DOCKER_NODE_PORTS,
  dockerStateDir,
  renderDockerCluster,
} from "../broker/nats/docker";
import { DEFAULT_MESSAGE_MAX_AGE_S } from "../broker/nats/message-stream";
import { CLUSTER_ADMIN } from "../broker/nats/nats-clients";
import { prepareJetStream } from "../broker/nats/prepare-jetstream";
import { identityFiles } from "../broker/nats/route-pki";
import { stateDir } from "../../../shared/state-dir";

const log = (line: string): void => console.error(`nats-cluster: ${line}`);

/** docker-compose.yml publishes each node's NATS port on the host's loopback: 4222, 4223, 4224. */
const HOST_NATS_URLS = [0, 1, 2].map((i) => `tls://localhost:${DOCKER_NODE_PORTS.client + i}`).join(",");

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName("npm run nats-cluster --")
    .command(
      "render-docker",
      "Write <state>/nats-cluster/docker/: n1..n3.conf, the route CA and the NATS-port identities (cluster-admin, ingest-worker-N) from the PKI (run `npm run setup` first)",
      (y) =>
        y.option("ingest-workers", {
          type: "number",
          default: DOCKER_INGEST_WORKERS,
          describe:
            "identities for this many JetStream ingest workers (route-pki/client-ingest-worker-N); docker-compose.yml runs 2",
        }),
      async (argv) => {
        const state = stateDir();
        const out = await renderDockerCluster(state, pkiPaths(state), {
          ingestWorkers: argv["ingest-workers"],
        });
        const { users } = out;
        log(
          `${users.users.length} users, ${users.pins.length} pinned certificates, ${users.skipped.length} left out; NATS-port identities ${[CLUSTER_ADMIN, ...out.workers].join(", ")}; written to ${dockerStateDir(state)}`,
        );
        for (const s of users.skipped) log(`  left out: ${s.kind} ${s.name}: ${s.reason}`);
      },
    )
    .command(
      "prepare-jetstream",
      "On running nodes, before any board connects: create $MQTT_msgs with limits retention and the ingest workers' durables (idempotent; refuses a stream with interest retention)",
      (y) =>
        y
          .option("servers", {
            type: "string",
            default: HOST_NATS_URLS,
            describe:
              "the nodes' NATS ports, tls://host:port,… (compose's nats-prepare: tls://nats-n1:4222,…)",
          })
          .option("identity", {
            type: "string",
            describe: `the cluster admin's route-CA identity prefix: PREFIX.pem, PREFIX.key.pem, ca.pem beside them (default <state>/nats-cluster/docker/route-pki/client-${CLUSTER_ADMIN})`,
          })
          .option("replicas", { type: "number", default: 3, describe: "replicas of $MQTT_msgs" })
          .option("max-age", {
            type: "number",
            default: DEFAULT_MESSAGE_MAX_AGE_S,
            describe: "seconds $MQTT_msgs keeps a message, acknowledged or not (README, Broker cluster)",
          })
          .option("timeout", {
            type: "number",
            default: 60,
            describe: "seconds to keep retrying while the nodes are not reachable or JetStream not ready",
          })
          .check((a) => {
            for (const u of a.servers.split(","))
              if (!/^tls:\/\/[^\s/]+:\d+$/.test(u.trim()))
                throw new Error(`--servers: "${u}" is not tls://host:port`);
            if (!(Number.isInteger(a.replicas) && a.replicas >= 1 && a.replicas <= 5))
              throw new Error("--replicas must be 1 to 5");
            if (!(a["max-age"] > 0)) throw new Error("--max-age must be positive");
            return true;
          }),
      async (argv) => {
        const prefix =
          argv.identity ?? join(dockerStateDir(stateDir()), "route-pki", `client-${CLUSTER_ADMIN}`);
        await prepareJetStream({
          servers: argv.servers.split(",").map((s) => s.trim()),
          tls: identityFiles(prefix),
          replicas: argv.replicas,
          maxAgeS: argv["max-age"],
          timeoutMs: argv.timeout * 1000,
          log,
        });
      },
    )
    .demandCommand(1)
    .strict()
    .help()
    .parseAsync();
}

main().catch((err: unknown) => {
  log(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
