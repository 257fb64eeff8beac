/**
 * The `fleet-admin` connection that `npm run trust` publishes with: MQTT 5, so that a publish the broker's ACL
 * refuses comes back as PUBACK reason 0x87 instead of the silent drop MQTT 3.1.1 gets from Mosquitto 2.0
 * (../shared REFERENCE, Durability). Client id = the CN, as the broker binds them. A broker that speaks only
 * MQTT 3.1.1 (the NATS cluster: nats-server 2.9 answers an MQTT 5 CONNECT with "unacceptable protocol
 * version") gets a 3.1.1 connection instead, and `onNotice` says what that costs.
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
  onNotice?: (line: string) => void;
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
  const options = {
    clientId: FLEET_ADMIN_IDENTITY,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: o.connectTimeoutMs ?? 15_000,
    ca: await readFile(paths.root, "utf8"),
    cert,
    key,
    rejectUnauthorized: true,
  };
  let client: MqttClient;
  try {
    client = await open(o.brokerUrl, { ...options, protocolVersion: 5 });
  } catch (err) {
    // CONNACK return code 1 (MQTT 3.1.1 §3.2.2.3), which MQTT.js reports by this text.
    if (!(err instanceof Error && /Unacceptable protocol version/i.test(err.message))) throw err;
    client = await open(o.brokerUrl, { ...options, protocolVersion: 4 });
    o.onNotice?.(
      `${o.brokerUrl} speaks MQTT 3.1.1 only: a publish its permissions refuse is acknowledged and dropped there, so a refusal cannot be seen from here (finish --wait still checks that the board switched)`,
    );
  }
  // With reconnectPeriod 0 a lost connection stays lost, and MQTT.js would queue what is sent after it for a
  // reconnect that never comes: every operation fails instead, with this reason.
  let lost: Error | undefined;
  const whenLost = new Promise<never>((_, reject) => {
    client.once("close", () => {
      lost = new Error(`the connection to ${o.brokerUrl} as ${FLEET_ADMIN_IDENTITY} was lost`);
      reject(lost);
    });
  });
  whenLost.catch(() => undefined);
  const unlessLost = <T>(op: () => Promise<T>): Promise<T> =>
    lost ? Promise.reject(lost) : Promise.race([op(), whenLost]);

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
        whenLost.catch(reject);
        unlessLost(() => client.subscribeAsync(topic, { qos: 1 })).then((granted) => {
          if (granted.some((g) => g.qos >= 0x80))
            reject(new Error(`the broker refused ${FLEET_ADMIN_IDENTITY} a subscription to ${topic} (ACL)`));
        }, reject);
      });
    } finally {
      clearTimeout(timer);
      if (onMessage) client.removeListener("message", onMessage);
      await unlessLost(() => client.unsubscribeAsync(topic)).catch(() => undefined);
    }
  }

  return {
    async publish(topic, payload, retain) {
      const packet = await unlessLost(() =>
        client.publishAsync(topic, Buffer.from(payload), { qos: 1, retain }),
      );
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
    close: () => (lost ? Promise.resolve() : client.endAsync()),
  };
}

function open(url: string, options: mqtt.IClientOptions): Promise<MqttClient> {
  const client = mqtt.connect(url, options);
  return new Promise<MqttClient>((resolve, reject) => {
    const onError = (err: Error): void => fail(err.message);
    const onClose = (): void => fail("connection closed");
    const fail = (why: string): void => {
      client.removeListener("error", onError);
      client.removeListener("close", onClose);
      client.end(true);
      reject(new Error(`cannot connect to ${url} as ${FLEET_ADMIN_IDENTITY}: ${why}`));
    };
    client.once("connect", () => {
      client.removeListener("error", onError);
      client.removeListener("close", onClose);
      // Later failures reach the caller through the publish or subscribe they break; an "error" event
      // without a listener would throw instead.
      client.on("error", () => undefined);
      resolve(client);
    });
    client.once("error", onError);
    client.once("close", onClose);
  });
}
