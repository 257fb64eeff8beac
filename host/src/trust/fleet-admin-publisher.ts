/**
 * The `fleet-admin` connection that `npm run trust` publishes with: MQTT 5, so that a publish the broker's ACL
 * refuses comes back as PUBACK reason 0x87 instead of the silent drop MQTT 3.1.1 gets from Mosquitto 2.0
 * (../shared REFERENCE, Durability). Client id = the CN, as the broker binds them.
 */
import { readFile } from "node:fs/promises";
import mqtt, { type MqttClient } from "mqtt";
import { FLEET_ADMIN_IDENTITY } from "../../../firmware/src/telemetry/vocabulary";
import { pkiPaths } from "../../../pki/src/index";
import type { BoardStatus, KeyAnswerWatcher, StatusWatcher, TrustPublisher } from "./field-rotation";
import { keyAnswerTopic, statusTopic } from "../../../firmware/src/telemetry/topics";

export interface FleetAdminConnection extends TrustPublisher, StatusWatcher, KeyAnswerWatcher {
  close(): Promise<void>;
}

export async function connectFleetAdmin(o: {
  stateDir: string;
  brokerUrl: string;
  connectTimeoutMs?: number;
}): Promise<FleetAdminConnection> {
  const paths = pkiPaths(o.stateDir);
  const svc = paths.service(FLEET_ADMIN_IDENTITY);
  let cert: string;
  let key: string;
  try {
    [cert, key] = await Promise.all([readFile(svc.cert, "utf8"), readFile(svc.key, "utf8")]);
  } catch {
    throw new Error(
      `no ${FLEET_ADMIN_IDENTITY} certificate at ${svc.cert}: run npm run setup, or npm run pki -- service ${FLEET_ADMIN_IDENTITY}`,
    );
  }
  const client: MqttClient = mqtt.connect(o.brokerUrl, {
    clientId: FLEET_ADMIN_IDENTITY,
    protocolVersion: 5,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: o.connectTimeoutMs ?? 15_000,
    ca: await readFile(paths.root, "utf8"),
    cert,
    key,
    rejectUnauthorized: true,
  });
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", (err) =>
      reject(new Error(`cannot connect to ${o.brokerUrl} as ${FLEET_ADMIN_IDENTITY}: ${err.message}`)),
    );
    client.once("close", () =>
      reject(new Error(`cannot connect to ${o.brokerUrl} as ${FLEET_ADMIN_IDENTITY}: connection closed`)),
    );
  });
  /** The first non-empty message on `topic` that `accept` takes (the retained one comes first), or undefined. */
  async function waitFor(
    topic: string,
    accept: (payload: Uint8Array) => boolean,
    timeoutMs: number,
  ): Promise<Uint8Array | undefined> {
    let onMessage: ((t: string, payload: Buffer) => void) | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<Uint8Array | undefined>((resolve, reject) => {
        onMessage = (t, payload) => {
          if (t !== topic || payload.length === 0) return;
          const bytes = new Uint8Array(payload);
          if (accept(bytes)) resolve(bytes);
        };
        client.on("message", onMessage);
        timer = setTimeout(() => resolve(undefined), timeoutMs);
        client.subscribeAsync(topic, { qos: 1 }).then((granted) => {
          if (granted.some((g) => g.qos >= 0x80))
            reject(new Error(`the broker refused ${FLEET_ADMIN_IDENTITY} a subscription to ${topic} (ACL)`));
        }, reject);
      });
    } finally {
      clearTimeout(timer);
      if (onMessage) client.removeListener("message", onMessage);
      await client.unsubscribeAsync(topic).catch(() => undefined);
    }
  }

  return {
    async publish(topic, payload, retain) {
      const packet = await client.publishAsync(topic, Buffer.from(payload), { qos: 1, retain });
      const code = (packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0;
      if (code >= 0x80)
        throw new Error(
          `the broker refused the publish to ${topic} (PUBACK reason 0x${code.toString(16)}): is the ACL's fleet-admin section in place?`,
        );
    },
    async waitForStatus(id, accept, timeoutMs) {
      let status: BoardStatus | undefined;
      const seen = await waitFor(
        statusTopic(id),
        (payload) => {
          try {
            status = JSON.parse(Buffer.from(payload).toString("utf8")) as BoardStatus;
          } catch {
            return false; // not a board's JSON status: not what is waited for
          }
          return accept(status);
        },
        timeoutMs,
      );
      return seen ? status : undefined;
    },
    waitForKeyAnswer: (id, accept, timeoutMs) => waitFor(keyAnswerTopic(id), accept, timeoutMs),
    close: () => client.endAsync(),
  };
}
