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
}

export type MessageStreamState =
  { kind: "created"; retention: "limits" } | { kind: "present"; retention: string };

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
    if (info) return { kind: "present", retention: info.config.retention };
    await jsm.streams.add({
      name: MQTT_MESSAGE_STREAM,
      subjects: [MQTT_MESSAGE_SUBJECTS],
      storage: "file",
      retention: "limits",
      discard: "old",
      num_replicas: o.replicas,
      max_age: (o.maxAgeS ?? DEFAULT_MESSAGE_MAX_AGE_S) * 1e9,
    });
    return { kind: "created", retention: "limits" };
  } finally {
    await nc.close();
  }
}
