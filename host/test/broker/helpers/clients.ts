/** MQTT clients for the broker tests: every call reports what the broker answered. */
import type { ConnectionOptions, TLSSocket } from "node:tls";
import mqtt from "mqtt";
import type { IClientOptions, IPublishPacket, MqttClient, IConnackPacket } from "mqtt";

export interface Identity {
  certPem: string;
  keyPem: string;
}

export interface ConnectOptions {
  url: string;
  ca: string;
  identity?: Identity;
  clientId: string;
  protocolVersion?: 4 | 5;
  clean?: boolean;
  will?: IClientOptions["will"];
  /** MQTT 5 CONNECT properties, e.g. sessionExpiryInterval. */
  properties?: IClientOptions["properties"];
  /** Extra TLS settings (versions, cipher list). */
  tls?: Partial<ConnectionOptions>;
  timeoutMs?: number;
}

export type ConnectOutcome =
  | {
      ok: true;
      client: MqttClient;
      connack: IConnackPacket;
      tls: { protocol: string | null; cipher: string };
    }
  | { ok: false; error: string; connack?: IConnackPacket };

/** One connection attempt, no reconnects: either a CONNACK with success, or why not. */
export function tryConnect(o: ConnectOptions): Promise<ConnectOutcome> {
  const client = mqtt.connect(o.url, {
    clientId: o.clientId,
    protocolVersion: o.protocolVersion ?? 5,
    clean: o.clean ?? true,
    reconnectPeriod: 0,
    connectTimeout: o.timeoutMs ?? 5000,
    ca: o.ca,
    cert: o.identity?.certPem,
    key: o.identity?.keyPem,
    rejectUnauthorized: true,
    // The test broker's certificate names localhost and 127.0.0.1.
    servername: "localhost",
    will: o.will,
    properties: o.properties,
    ...(o.tls as IClientOptions),
  });
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: ConnectOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!r.ok) client.end(true);
      resolve(r);
    };
    const timer = setTimeout(
      () => finish({ ok: false, error: "timeout waiting for CONNACK" }),
      (o.timeoutMs ?? 5000) + 1000,
    );
    client.once("connect", (connack) => {
      const sock = client.stream as unknown as TLSSocket;
      const cipher = sock.getCipher?.();
      finish({
        ok: true,
        client,
        connack,
        tls: { protocol: sock.getProtocol?.() ?? null, cipher: cipher?.standardName ?? cipher?.name ?? "" },
      });
    });
    client.once("error", (err) =>
      finish({ ok: false, error: `${(err as NodeJS.ErrnoException).code ?? ""} ${err.message}`.trim() }),
    );
    client.once("close", () => finish({ ok: false, error: "connection closed before CONNACK" }));
  });
}

export async function mustConnect(o: ConnectOptions): Promise<MqttClient> {
  const r = await tryConnect(o);
  if (!r.ok) throw new Error(`expected ${o.clientId} to connect: ${r.error}`);
  return r.client;
}

export interface PublishResult {
  /** PUBACK reason code (MQTT 5); 0 = success. */
  reasonCode: number;
}

export function publishQos1(
  client: MqttClient,
  topic: string,
  payload: string,
  retain = false,
): Promise<PublishResult> {
  return new Promise((resolve, reject) => {
    client.publish(topic, payload, { qos: 1, retain }, (err, packet) => {
      if (err) {
        const code = (err as Error & { code?: number }).code;
        if (typeof code === "number") resolve({ reasonCode: code });
        else reject(err);
        return;
      }
      const rc = (packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0;
      resolve({ reasonCode: rc });
    });
  });
}

/** Returns the granted QoS / reason code per filter as the broker put it in SUBACK. */
export function subscribe(client: MqttClient, filters: string[], qos: 0 | 1 = 1): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(filters, { qos }, (err, granted) => {
      if (granted) resolve(granted.map((g) => g.qos));
      else reject(err ?? new Error("no SUBACK"));
    });
  });
}

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
  qos: number;
}

/** Records every message a client receives from now on. */
export function recorder(client: MqttClient): {
  messages: Received[];
  waitFor(pred: (m: Received) => boolean, timeoutMs?: number): Promise<Received>;
} {
  const messages: Received[] = [];
  const waiters: { pred: (m: Received) => boolean; resolve: (m: Received) => void }[] = [];
  client.on("message", (topic: string, payload: Buffer, packet: IPublishPacket) => {
    const m: Received = { topic, payload: payload.toString("utf8"), retain: packet.retain, qos: packet.qos };
    messages.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  return {
    messages,
    waitFor(pred, timeoutMs = 5000) {
      const seen = messages.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `message not received within ${timeoutMs} ms; got ${JSON.stringify(messages.map((x) => x.topic))}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push({
          pred,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
      });
    },
  };
}

export function endClient(client: MqttClient | undefined): Promise<void> {
  if (!client) return Promise.resolve();
  return new Promise((resolve) => client.end(false, {}, () => resolve()));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
