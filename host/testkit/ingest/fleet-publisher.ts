// Boards that publish real telemetry messages (foundation codec and envelope) through the real
// broker, one mTLS connection each, as the broker's ACL demands (a board may publish only on
// its own topic). A stand-in for the fleet emulator in the ingest's tests and benchmark.
import { readFile } from "node:fs/promises";
import mqtt, { type MqttClient } from "mqtt";
import { nodeAead } from "../../src/crypto/node-aead";
import { deriveDeviceKey } from "../../src/crypto/device-keys";
import { encodeTelemetryMessage, type PayloadMode } from "../../../firmware/src/payload/telemetry-message";
import type { Reading } from "../../../firmware/src/telemetry/reading";

export interface FleetCredentials {
  ca: string;
  /** Certificate and key files of a device id. */
  device(id: string): { cert: string; key: string };
}

export interface FleetOptions {
  brokerUrl: string;
  ids: string[];
  credentials: FleetCredentials;
  /** Fleet payload secret and its key id; plain JSON when omitted. */
  encryption?: { keyId: number; master: Uint8Array };
  boot?: number;
  /** Connections opened at once (TLS handshakes are CPU work for the broker too). */
  connectConcurrency?: number;
}

export function sampleReading(sensorId: string, seq: number, ts: number, boot = 1): Reading {
  const wobble = (seq % 100) / 100;
  return {
    sensorId,
    seq,
    ts,
    boot,
    fw: "test-1.0.0",
    values: {
      temperature_c: 65 + wobble,
      pressure_bar: 30 + wobble,
      h2_flow_sccm: 12000 + (seq % 1000),
      purity_pct: 99.95,
      voltage_v: Math.round((1.9 + wobble / 10) * 1000) / 1000,
      current_a: 150 + wobble,
    },
    faults: [],
  };
}

export class FleetBoard {
  readonly mode: PayloadMode;
  /** Next sequence number. */
  seq = 0;
  /** Device timestamps must differ per reading: the store keeps one sample per series and ms. */
  #lastTs = 0;

  constructor(
    readonly id: string,
    readonly client: MqttClient,
    mode: PayloadMode,
    readonly boot: number,
  ) {
    this.mode = mode;
  }

  nextTs(): number {
    this.#lastTs = Math.max(Date.now(), this.#lastTs + 1);
    return this.#lastTs;
  }

  /** Encodes the next reading (advancing seq) without sending it. */
  nextMessage(): { reading: Reading; topic: string; payload: Uint8Array } {
    const reading = sampleReading(this.id, this.seq++, this.nextTs(), this.boot);
    return { reading, ...encodeTelemetryMessage(reading, this.mode) };
  }

  /** Publishes the next reading at QoS 1; resolves with it once the broker acknowledged. */
  async publishNext(): Promise<Reading> {
    const m = this.nextMessage();
    await this.publishRaw(m.topic, m.payload);
    return m.reading;
  }

  publishRaw(topic: string, payload: Uint8Array, qos: 0 | 1 = 1, retain = false): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.publish(
        topic,
        Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
        { qos, retain },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  end(): Promise<void> {
    return this.client.endAsync(true);
  }
}

export class TestFleet {
  constructor(readonly boards: FleetBoard[]) {}

  static async connect(o: FleetOptions): Promise<TestFleet> {
    const ca = await readFile(o.credentials.ca, "utf8");
    const boot = o.boot ?? 1;
    const boards: FleetBoard[] = new Array(o.ids.length);
    let next = 0;
    const worker = async () => {
      while (next < o.ids.length) {
        const i = next++;
        const id = o.ids[i]!;
        const files = o.credentials.device(id);
        const [cert, key] = await Promise.all([readFile(files.cert, "utf8"), readFile(files.key, "utf8")]);
        const client = await mqtt.connectAsync(o.brokerUrl, {
          clientId: id,
          ca,
          cert,
          key,
          rejectUnauthorized: true,
          protocolVersion: 4,
          clean: true,
          reconnectPeriod: 500,
          connectTimeout: 30_000,
          keepalive: 60,
        });
        const mode: PayloadMode = o.encryption
          ? {
              kind: "encrypted",
              aead: nodeAead,
              keyId: o.encryption.keyId,
              key: deriveDeviceKey(o.encryption.master, id),
            }
          : { kind: "plain" };
        boards[i] = new FleetBoard(id, client, mode, boot);
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(o.connectConcurrency ?? 20, o.ids.length) }, worker));
    } catch (err) {
      await Promise.all(boards.filter(Boolean).map((b) => b.end()));
      throw err;
    }
    return new TestFleet(boards);
  }

  /**
   * Every board publishes `perBoard` readings, each waiting for its PUBACK before the next
   * (as the firmware's outbox does with a window of one); resolves with the readings sent.
   */
  async publishEach(
    perBoard: number,
    o: { intervalMs?: number; onProgress?: (sent: number) => void } = {},
  ): Promise<Map<string, Reading[]>> {
    const sent = new Map<string, Reading[]>();
    let total = 0;
    await Promise.all(
      this.boards.map(async (b) => {
        const list: Reading[] = [];
        sent.set(b.id, list);
        for (let k = 0; k < perBoard; k++) {
          list.push(await b.publishNext());
          total++;
          if (o.onProgress && total % 1000 === 0) o.onProgress(total);
          if (o.intervalMs) await new Promise((r) => setTimeout(r, o.intervalMs));
        }
      }),
    );
    return sent;
  }

  async end(): Promise<void> {
    await Promise.all(this.boards.map((b) => b.end()));
  }
}
