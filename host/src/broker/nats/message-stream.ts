/**
 * The MQTT layer's message stream `$MQTT_msgs`, created by the launcher before any MQTT client connects,
 * with *limits* retention instead of the *interest* retention nats-server 2.9.10 would give it.
 *
 * Why: the rolling-restart and node-kill losses of issue 18. In 2.9.10 a replica of an interest-retention
 * stream that applies a message while it has no consumer attached yet (a node that has just restarted
 * replays or catches up the stream before its consumers are recovered) does not store it: it records a
 * skipped sequence (`processJetStreamMsg`, "If we are interest based retention and have no consumers then we
 * can skip", server/stream.go). The leader stored and PUBACKed the message; once the restarted replica leads
 * the stream, the ingest's consumer finds nothing at those sequences and moves past them. nats-server fixed
 * this in 2.9.16 (commit 71af150, "make sure our consumers are running before entering into monitorStream
 * logic"). A limits stream never takes that branch: every replica stores every message.
 *
 * The price: acknowledged messages are not deleted at once but when they are older than `maxAgeS` (default
 * 24 h), so the stream holds a day of the fleet's traffic on disk, and a message no consumer acknowledged
 * within `maxAgeS` is dropped (an ingest away for a day; the boards' end-to-end confirmations are the line
 * behind it). 2.9.10 uses an existing `$MQTT_msgs` as it finds it (mqttCreateAccountSessionManager looks it
 * up and creates it only when missing), which is what makes this possible without patching the server.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type StreamInfo } from "@nats-io/jetstream";
import type { TlsFiles } from "./node-config";
import type { SubjectPermissions } from "./permissions";

export const MQTT_MESSAGE_STREAM = "$MQTT_msgs";
/** Where the MQTT layer stores QoS 1 messages: `$MQTT.msgs.` + the topic as a subject. */
export const MQTT_MESSAGE_SUBJECTS = "$MQTT.msgs.>";
export const DEFAULT_MESSAGE_MAX_AGE_S = 24 * 3600;

export interface MessageStreamOptions {
  /** `tls://127.0.0.1:PORT` of any node's NATS port. */
  servers: string[];
  /** The launcher's route-CA client certificate (`cluster-admin`). */
  tls: TlsFiles;
  replicas: number;
  maxAgeS?: number;
  /** Also create the ingest workers' durables (INGEST_DURABLES) if missing. */
  ingestDurables?: boolean;
  /**
   * Throw, before creating any durable, when the stream exists with another retention than limits
   * (prepare-jetstream); the launcher instead logs a warning and goes on.
   */
  requireLimits?: boolean;
}

/**
 * The durable pull consumers the ingest workers share (jetstream-source.ts): one for telemetry, one for
 * status. Delivered from their creation on; a message a worker does not acknowledge within AckWait goes
 * to another worker.
 */
export const INGEST_DURABLES = {
  telemetry: { name: "ingest-telemetry", filter: "$MQTT.msgs.electrolyser.*.telemetry" },
  status: { name: "ingest-status", filter: "$MQTT.msgs.electrolyser.*.status" },
} as const;
export const INGEST_ACK_WAIT_S = 15;
/** Unacknowledged messages per durable across all workers (each worker's pull window is its --max-held). */
export const INGEST_MAX_ACK_PENDING = 50_000;

/**
 * What a worker may do on the NATS port: pull from and acknowledge the two durables, and publish the boards'
 * confirmations (the MQTT ingest identity's one downlink right), nothing else.
 */
export function workerPermissions(): SubjectPermissions {
  const durables = Object.values(INGEST_DURABLES).map((d) => d.name);
  return {
    publish: {
      allow: [
        "$JS.API.INFO",
        ...durables.flatMap((d) => [
          `$JS.API.CONSUMER.INFO.${MQTT_MESSAGE_STREAM}.${d}`,
          `$JS.API.CONSUMER.MSG.NEXT.${MQTT_MESSAGE_STREAM}.${d}`,
          `$JS.ACK.${MQTT_MESSAGE_STREAM}.${d}.>`,
        ]),
        "electrolyser.*.down.stored",
      ],
    },
    // Replies to its own requests (pulled messages, API answers).
    subscribe: { allow: ["_INBOX.>"] },
  };
}

export type MessageStreamState = (
  { kind: "created"; retention: "limits" } | { kind: "present"; retention: string }
) & {
  /** The INGEST_DURABLES this call created (empty: they were there, or not asked for). */
  createdDurables: string[];
};

/** `$MQTT_msgs` exists with another retention than limits and `requireLimits` was asked: not worth retrying. */
export class MessageStreamRetentionError extends Error {}

export async function natsAdminConnection(servers: string[], tls: TlsFiles): Promise<NatsConnection> {
  return connect({
    servers,
    tls: { certFile: tls.cert, keyFile: tls.key, caFile: tls.ca },
    name: "est-cluster-admin",
    timeout: 10_000,
  });
}

/**
 * Creates `$MQTT_msgs` with limits retention if it does not exist. An existing stream is left alone (its
 * retention cannot be changed; deleting it would drop what it holds): the caller reports an interest one.
 */
export async function ensureMessageStream(o: MessageStreamOptions): Promise<MessageStreamState> {
  const nc = await natsAdminConnection(o.servers, o.tls);
  try {
    const jsm = await jetstreamManager(nc, { timeout: 10_000 });
    let info: StreamInfo | undefined;
    try {
      info = await jsm.streams.info(MQTT_MESSAGE_STREAM);
    } catch (err) {
      if (!/stream not found/i.test(err instanceof Error ? err.message : String(err))) throw err;
    }
    if (info && o.requireLimits && info.config.retention !== "limits")
      throw new MessageStreamRetentionError(
        `${MQTT_MESSAGE_STREAM} exists with ${info.config.retention} retention (an MQTT client connected before it was prepared): nats-server 2.9.10 can lose PUBACKed messages across node restarts with it, and its retention cannot be changed; stop the nodes, empty their JetStream volumes and prepare again before any board connects`,
      );
    const createdDurables: string[] = [];
    const state: MessageStreamState = info
      ? { kind: "present", retention: info.config.retention, createdDurables }
      : { kind: "created", retention: "limits", createdDurables };
    if (!info)
      await jsm.streams.add({
        name: MQTT_MESSAGE_STREAM,
        subjects: [MQTT_MESSAGE_SUBJECTS],
        storage: "file",
        retention: "limits",
        discard: "old",
        num_replicas: o.replicas,
        max_age: (o.maxAgeS ?? DEFAULT_MESSAGE_MAX_AGE_S) * 1e9,
      });
    if (o.ingestDurables) {
      const existing = new Set<string>();
      for await (const c of jsm.consumers.list(MQTT_MESSAGE_STREAM)) existing.add(c.name);
      for (const d of Object.values(INGEST_DURABLES)) {
        if (existing.has(d.name)) continue;
        await jsm.consumers.add(MQTT_MESSAGE_STREAM, {
          durable_name: d.name,
          filter_subject: d.filter,
          ack_policy: "explicit",
          deliver_policy: "new",
          ack_wait: INGEST_ACK_WAIT_S * 1e9,
          max_ack_pending: INGEST_MAX_ACK_PENDING,
          max_deliver: -1,
        });
        createdDurables.push(d.name);
      }
    }
    return state;
  } finally {
    await nc.close();
  }
}
