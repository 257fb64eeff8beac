/**
 * `npm run nats-cluster -- prepare-jetstream`: what the native launcher does right after its nodes are up
 * (cluster.ts), for nodes it did not start (docker-compose's nats-cluster profile, its one-shot
 * `nats-prepare`): `$MQTT_msgs` with limits retention before any MQTT client connects (message-stream.ts,
 * why), and the ingest workers' two durables. Idempotent: what exists is left as it is. A stream that an MQTT
 * client's CONNECT already made with interest retention is refused, not used.
 */
import { access, constants } from "node:fs/promises";
import {
  DEFAULT_MESSAGE_MAX_AGE_S,
  ensureMessageStream,
  INGEST_DURABLES,
  MessageStreamRetentionError,
  MQTT_MESSAGE_STREAM,
  type MessageStreamState,
} from "./message-stream";
import type { TlsFiles } from "./node-config";

export interface PrepareJetStreamOptions {
  servers: string[];
  /** The cluster-admin identity (route-pki.ts identityFiles()). */
  tls: TlsFiles;
  replicas: number;
  maxAgeS?: number;
  /** Retry connection and JetStream errors this long (nodes still electing a meta leader); default 60 s. */
  timeoutMs?: number;
  log: (line: string) => void;
}

export interface PrepareJetStreamResult {
  stream: MessageStreamState;
  /** What this run created (the stream, durables); empty when everything was already there. */
  changes: string[];
}

export async function prepareJetStream(o: PrepareJetStreamOptions): Promise<PrepareJetStreamResult> {
  // A missing identity is a clear error at once, not a minute of retries.
  for (const [what, path] of [
    ["certificate", o.tls.cert],
    ["private key", o.tls.key],
    ["route CA", o.tls.ca],
  ] as const)
    await access(path, constants.R_OK).catch(() => {
      throw new Error(`cluster admin ${what} missing or unreadable: ${path} (run render-docker first)`);
    });
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  const maxAgeS = o.maxAgeS ?? DEFAULT_MESSAGE_MAX_AGE_S;
  o.log(`connecting to ${o.servers.join(",")} as ${o.tls.cert}`);
  let stream: MessageStreamState;
  for (let attempt = 1; ; attempt++) {
    try {
      stream = await ensureMessageStream({
        servers: o.servers,
        tls: o.tls,
        replicas: o.replicas,
        maxAgeS,
        ingestDurables: true,
        requireLimits: true,
      });
      break;
    } catch (err) {
      // A wrong identity or retention will not mend itself; a node still starting will.
      const final =
        err instanceof MessageStreamRetentionError ||
        /authorization violation|permissions violation/i.test(err instanceof Error ? err.message : "");
      if (final || Date.now() > deadline) throw err;
      o.log(`attempt ${attempt}: ${err instanceof Error ? err.message : String(err)}; retrying in 2 s`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  const changes: string[] = [];
  if (stream.kind === "created") {
    changes.push(MQTT_MESSAGE_STREAM);
    o.log(
      `${MQTT_MESSAGE_STREAM}: created (limits retention, ${o.replicas} replicas, messages kept ${maxAgeS} s)`,
    );
  } else o.log(`${MQTT_MESSAGE_STREAM}: present (limits retention), left as it is`);
  for (const d of Object.values(INGEST_DURABLES)) {
    const created = stream.createdDurables.includes(d.name);
    if (created) changes.push(d.name);
    o.log(`durable ${d.name} (${d.filter}): ${created ? "created" : "present, left as it is"}`);
  }
  o.log(changes.length ? `prepared: created ${changes.join(", ")}` : "already prepared: nothing changed");
  return { stream, changes };
}
