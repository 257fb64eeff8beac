// The ingest: MQTT (QoS 1, persistent session, shared subscription) → classify → batch →
// store → PUBACK. A message is acknowledged to the broker only after the store accepted its
// batch (or, when refused, after it reached the dead-letter file), so a crash at any point
// leaves it with the broker, which delivers it again; the store's one-sample-per-timestamp
// rule (InfluxDB overwrite, VictoriaMetrics dedup) makes the repeat harmless.
import { STATUS_FILTER, TELEMETRY_FILTER, sharedFilter } from "../../../firmware/src/telemetry/vocabulary";
import type { Server } from "node:http";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { IngestAccount } from "./account";
import type { MessageClassifier, Outcome } from "./classify";
import type { DeadLetter, DeadLetterSink } from "./dead-letter";
import { HeldAckReceiver, type HeldMessage } from "./held-acks";
import type { AckReceiver, MessageSource } from "./message-source";
import { accountLine, rejectedLine } from "./line-protocol";
import { createIngestMetrics, serveMetrics, type IngestMetrics } from "./metrics";
import { writeIsolatingRefused, type BatchStore, type RefusedLine } from "./store-writer";
import { Confirmer, type StoreDurability, type StoredReading } from "./confirmer";

export interface IngestTls {
  ca: string | Buffer;
  cert: string | Buffer;
  key: string | Buffer;
}

export interface IngestServiceOptions {
  brokerUrl: string;
  tls: IngestTls;
  /**
   * Fixed, so the broker keeps the session (and its backlog) across restarts. The project's Mosquitto
   * configuration replaces it with the certificate CN (use_username_as_clientid): there the session
   * belongs to the identity, and a second process with the same certificate replaces this one.
   */
  clientId: string;
  /**
   * Shared-subscription group: ingest processes in one group split the load. Empty: a plain
   * subscription (one ingest process). Mosquitto 2.0.11 (Debian 12) loses a persistent session's
   * shared subscription over a broker restart, and drops what boards publish until the ingest
   * subscribes again; a plain subscription survives the restart (see README).
   */
  group: string;
  classifier: MessageClassifier;
  store: BatchStore;
  deadLetters: DeadLetterSink;
  /** Lines per store write (default 2000). */
  batchSize?: number;
  /** A batch is written at the latest this long after its first message (default 50 ms). */
  batchMs?: number;
  /**
   * Where messages come from when not from MQTT: the JetStream pull consumers of the NATS cluster's ingest
   * workers (jetstream-source.ts). Then brokerUrl, tls, clientId and group are not used.
   */
  source?: MessageSource;
  /** Unacknowledged messages at most; also the MQTT 5 Receive Maximum (default 10000). */
  maxHeld?: number;
  /**
   * Readings the store accepted that may wait for their durability rule at most (default 200000): beyond it the
   * ingest writes nothing more until some are confirmed, so the backlog waits with the broker (README
   * "Durability", the total bound).
   */
  maxConfirmPending?: number;
  /** Retry backoff while the store is down (default 200 ms doubling to 5 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** How often the account is written to the store (default 10 s; 0 = never). */
  accountIntervalMs?: number;
  /** Metrics endpoint; undefined = none. Port 0 picks a free one. */
  metrics?: { port: number; host?: string };
  /** MQTT keepalive in seconds (default 30). */
  keepaliveSec?: number;
  /** Session kept by the broker while the ingest is away (default 7 days; MQTT 5 only). */
  sessionExpirySec?: number;
  /**
   * MQTT 5 (default) or 3.1.1, which is all NATS 2.9 speaks. Over 3.1.1 there is no Receive Maximum:
   * the broker's own window bounds what is held (nats-server: mqtt max_ack_pending per subscription).
   */
  protocolVersion?: 4 | 5;
  log?: (line: string) => void;
  /**
   * End-to-end confirmations to the boards (electrolyser/<id>/down/stored), sent once `durability` says the
   * store holds a reading durably; undefined: none (the boards fall back to PUBACK or wait, by their mode).
   */
  confirm?: { durability: StoreDurability; intervalMs?: number };
  /**
   * A bug surfaced in the write path (not a store or broker failure, which are retried).
   * The CLI exits so a supervisor restarts it and the broker re-delivers what was unacknowledged.
   */
  onFatal?: (err: unknown) => void;
}

interface Item {
  msg: HeldMessage;
  outcome: Outcome;
}

const STORE_REJECTED = "store_rejected";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class IngestService {
  readonly account = new IngestAccount();
  readonly #o: IngestServiceOptions;
  readonly #batchSize: number;
  readonly #batchMs: number;
  readonly #maxHeld: number;
  readonly #log: (line: string) => void;
  readonly #metrics: IngestMetrics;
  #client: MqttClient | undefined;
  #receiver: AckReceiver | undefined;
  #pending: Item[] = [];
  /** The batch #commit is writing (or retrying): out of #pending, still in memory. */
  #writingBatch: Item[] = [];
  #pendingSince = 0;
  /** The connection whose messages #pending holds (see #dropStale). */
  #currentConnection = 0;
  readonly #maxConfirmPending: number;
  #confirmFull = false;
  #flushTimer: NodeJS.Timeout | undefined;
  #accountTimer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  #stopping = false;
  #abandonWrites = false;
  #storeUp = true;
  #metricsServer: (Server & { port: number }) | undefined;
  #stopped: Promise<void> | undefined;
  #started = false;
  #confirmer: Confirmer | undefined;

  constructor(o: IngestServiceOptions) {
    this.#o = o;
    this.#batchSize = o.batchSize ?? 2000;
    this.#batchMs = o.batchMs ?? 50;
    this.#maxHeld = Math.min(65535, o.maxHeld ?? 10_000);
    if (this.#maxHeld < this.#batchSize) throw new Error("maxHeld must be at least batchSize");
    this.#maxConfirmPending = o.maxConfirmPending ?? 200_000;
    if (!(this.#maxConfirmPending >= this.#batchSize))
      throw new Error("maxConfirmPending must be at least batchSize");
    this.#log = o.log ?? ((line) => console.error(line));
    this.#metrics = createIngestMetrics(this.account, {
      held: () => this.#receiver?.held ?? 0,
      pendingBatch: () => this.#pending.length,
      storeUp: () => this.#storeUp,
      connected: () => (this.#o.source ? this.#o.source.connected : (this.#client?.connected ?? false)),
      confirmPending: () => this.#confirmer?.pending ?? 0,
      confirmedReadings: () => this.#confirmer?.counts.confirmedReadings ?? 0,
      confirmationsPublished: () => this.#confirmer?.counts.published ?? 0,
      inMemory: () => this.inMemory,
      inMemoryLimit: () => this.memoryBound,
      confirmFull: () => this.#confirmFull,
    });
  }

  get metricsPort(): number | undefined {
    return this.#metricsServer?.port;
  }

  get held(): number {
    return this.#receiver?.held ?? 0;
  }

  /**
   * Readings and messages in the ingest's memory: waiting for a write, being written, and (confirmations on)
   * accepted by the store but not yet durable. The classifier's in-flight set is the writes among the first two.
   */
  get inMemory(): number {
    return this.#pending.length + this.#writingBatch.length + (this.#confirmer?.pending ?? 0);
  }

  /**
   * The most inMemory can reach: the current connection's unacknowledged window (maxHeld, the broker's Receive
   * Maximum; one more over MQTT 3.1.1, where the receiver stalls past it), the batch being written (possibly a lost
   * connection's, see #dropStale), and the readings awaiting durability (maxConfirmPending, when on).
   */
  get memoryBound(): number {
    return this.#maxHeld + 1 + this.#batchSize + (this.#o.confirm ? this.#maxConfirmPending : 0);
  }

  /** How many MQTT connections this service has made (1 while the first one lasts). */
  get connections(): number {
    return this.#receiver?.connection ?? 0;
  }

  get storeUp(): boolean {
    return this.#storeUp;
  }

  /** The confirmations' figures, when they are on. */
  get confirmer(): Confirmer | undefined {
    return this.#confirmer;
  }

  metricsText(): Promise<string> {
    return this.#metrics.registry.metrics();
  }

  /** Connects and subscribes; resolves once the subscription is in place. */
  async start(): Promise<void> {
    if (this.#o.metrics)
      this.#metricsServer = await serveMetrics(
        this.#metrics.registry,
        this.#o.metrics.port,
        this.#o.metrics.host ?? "127.0.0.1",
      );
    if (this.#o.source) {
      const source = this.#o.source;
      this.#receiver = source;
      await source.start((m) => this.#onMessage(m));
      this.#started = true;
      if (this.#o.confirm) {
        if (!source.publishDownlink) throw new Error("this message source cannot send confirmations");
        this.#startConfirmer((topic, payload) => source.publishDownlink!(topic, payload));
      }
      this.#startAccountTimer();
      return;
    }
    const options: IClientOptions = {
      clientId: this.#o.clientId,
      protocolVersion: this.#o.protocolVersion ?? 5,
      clean: false,
      ...(this.#o.protocolVersion === 4
        ? {}
        : {
            properties: {
              sessionExpiryInterval: this.#o.sessionExpirySec ?? 7 * 86_400,
              // Flow control: the broker sends at most this many unacknowledged messages.
              receiveMaximum: this.#maxHeld,
            },
          }),
      ca: this.#o.tls.ca,
      cert: this.#o.tls.cert,
      key: this.#o.tls.key,
      rejectUnauthorized: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      keepalive: this.#o.keepaliveSec ?? 30,
      // #subscribe() runs on every connection instead (see the connect handler).
      resubscribe: false,
      // MQTT.js logs every packet through `debug`; even disabled that was ~3% of the ingest's CPU.
      log: () => undefined,
    };
    const client = mqtt.connect(this.#o.brokerUrl, { ...options, manualConnect: true });
    this.#client = client;
    this.#receiver = new HeldAckReceiver(client, (m) => this.#onMessage(m), this.#maxHeld);
    client.on("error", (err) => this.#log(`ingest: broker: ${err.message}`));
    client.on("offline", () => this.#log("ingest: broker connection lost; reconnecting"));
    client.on("connect", (connack) => {
      this.#log(
        `ingest: connected to ${this.#o.brokerUrl} (session ${connack.sessionPresent ? "resumed" : "new"})`,
      );
      // Subscribe on every connection, even to a resumed session: Mosquitto 2.0.11 restores a
      // session's shared subscription after a restart in name only (nothing is delivered to it).
      if (this.#started)
        this.#subscribe().catch((err: unknown) => this.#log(`ingest: subscribe failed: ${String(err)}`));
    });
    const firstConnect = new Promise<void>((resolve, reject) => {
      const onConnect = () => {
        client.off("error", onError);
        resolve();
      };
      const onError = (err: Error) => {
        // Refused by the broker (bad certificate, not authorised): retrying will not help.
        client.off("connect", onConnect);
        client.end(true);
        reject(err);
      };
      client.once("connect", onConnect);
      client.once("error", onError);
    });
    client.connect();
    await firstConnect;
    await this.#subscribe();
    this.#started = true;
    // Not queued while the broker is away (MQTT.js would buffer without bound): the next round sends it.
    if (this.#o.confirm)
      this.#startConfirmer((topic, payload) => {
        if (!client.connected) return false;
        client.publish(topic, Buffer.from(payload), { qos: 1 });
        return true;
      });
    this.#startAccountTimer();
  }

  #startConfirmer(publish: (topic: string, payload: Uint8Array) => boolean): void {
    this.#confirmer = new Confirmer({
      durability: this.#o.confirm!.durability,
      intervalMs: this.#o.confirm!.intervalMs,
      log: this.#log,
      publish,
      rewrite: async (lines) => {
        await writeIsolatingRefused(this.#o.store, lines);
      },
    });
    this.#confirmer.start();
  }

  #startAccountTimer(): void {
    if ((this.#o.accountIntervalMs ?? 10_000) > 0) {
      this.#accountTimer = setInterval(() => void this.writeAccount(), this.#o.accountIntervalMs ?? 10_000);
    }
  }

  async #subscribe(): Promise<void> {
    const client = this.#client;
    if (!client) return;
    const telemetry = this.#o.group ? sharedFilter(this.#o.group, TELEMETRY_FILTER) : TELEMETRY_FILTER;
    const granted = await client.subscribeAsync({
      // Retain as published: a retained reading is flagged on live delivery too, so it is refused every time.
      [telemetry]: { qos: 1, rap: true },
      // Not shared: retained last-will statuses are only delivered to plain subscriptions.
      [STATUS_FILTER]: { qos: 1 },
    });
    const refused = granted.filter((g) => g.qos > 2);
    if (refused.length > 0)
      throw new Error(`broker refused subscription ${refused.map((g) => g.topic).join(", ")}`);
  }

  #onMessage(msg: HeldMessage): void {
    if (this.#stopping) {
      // Shutting down: not acknowledged, so the broker keeps it for the next session.
      this.#receiver?.abandon(msg);
      return;
    }
    if (msg.connection !== this.#currentConnection) this.#dropStale(msg.connection);
    if (msg.qos === 0 && this.#pending.length + this.#writingBatch.length > this.#maxHeld + this.#batchSize) {
      // QoS 0 is outside the broker's Receive Maximum: past the bound it is dropped, as QoS 0 allows, and counted.
      this.#metrics.droppedQos0.inc();
      return;
    }
    let outcome: Outcome;
    try {
      outcome = this.#o.classifier.classify(msg.topic, msg.payload, msg.retain);
    } catch (err) {
      // The decoder returns typed errors; anything thrown is a bug, but one message must not stop the ingest.
      outcome = { kind: "rejected", sensorId: "_unknown", reason: "internal_error", detail: String(err) };
    }
    if (!isStatus(outcome)) this.account.received(outcome.sensorId);
    if (this.#pending.length === 0) this.#pendingSince = Date.now();
    this.#pending.push({ msg, outcome });
    if (this.#pending.length >= this.#batchSize) this.#kick();
    else this.#flushTimer ??= setTimeout(() => this.#kick(), this.#batchMs);
  }

  /**
   * A new connection delivers its first message. The messages of the lost one that wait in #pending cannot be
   * acknowledged any more, and the broker delivers them again on this one (its session kept them unacknowledged):
   * keeping both copies would add a window at every reconnect while the store is down. So the old copies go, before
   * any new message is classified (a new copy must not be taken for a duplicate of one about to be dropped), and their
   * places in the classifier are released for the new copies. The batch being written stays: its writes are under
   * way, and new copies classified as its duplicates are acknowledged after it. A broker that lost its session lost
   * the messages too (with the rest of its queue); only confirmations recover those, from the boards.
   */
  #dropStale(connection: number): void {
    this.#currentConnection = connection;
    const keep: Item[] = [];
    let dropped = 0;
    for (const item of this.#pending) {
      // QoS 0 is never delivered again: it stays.
      if (item.msg.qos === 0 || item.msg.connection === connection) {
        keep.push(item);
        continue;
      }
      dropped++;
      const o = item.outcome;
      if (o.kind === "write" && o.position) this.#o.classifier.release(o.sensorId, o.position);
    }
    if (dropped === 0) return;
    this.#pending = keep;
    this.#metrics.redeliveryDropped.inc(dropped);
    this.#log(
      `ingest: reconnected; ${dropped} unwritten messages of the lost connection come again, dropped`,
    );
  }

  #kick(): void {
    if (this.#flushTimer) {
      clearTimeout(this.#flushTimer);
      this.#flushTimer = undefined;
    }
    if (this.#writing) return;
    this.#writing = this.#drain()
      .catch((err: unknown) => {
        this.#log(
          `ingest: internal error in the write path: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
        );
        this.#abandonWrites = true;
        this.#o.onFatal?.(err);
      })
      .finally(() => {
        this.#writing = undefined;
        if (this.#pending.length > 0 && !this.#abandonWrites) {
          const wait = Math.max(0, this.#batchMs - (Date.now() - this.#pendingSince));
          if (this.#pending.length >= this.#batchSize || this.#stopping || wait === 0) this.#kick();
          else this.#flushTimer ??= setTimeout(() => this.#kick(), wait);
        }
      });
  }

  /** Writes batches one at a time, in arrival order, so acknowledgements keep that order too. */
  async #drain(): Promise<void> {
    while (this.#pending.length > 0 && !this.#abandonWrites) {
      const full = this.#pending.length >= this.#batchSize;
      const due = Date.now() - this.#pendingSince >= this.#batchMs;
      if (!full && !due && !this.#stopping) return;
      if (!(await this.#confirmRoom())) return;
      const batch = this.#pending.splice(0, this.#batchSize);
      this.#writingBatch = batch;
      this.#pendingSince = Date.now();
      let done: boolean;
      try {
        done = await this.#commit(batch);
      } finally {
        this.#writingBatch = [];
      }
      if (!done) {
        this.#pending.unshift(...batch);
        return;
      }
    }
  }

  /**
   * Waits while the readings awaiting durability fill their share of the bound: the next batch stays unwritten and
   * unacknowledged, so the broker stops at the Receive Maximum and the backlog waits with it. False: writes were
   * abandoned meanwhile. At shutdown it does not wait (the stop is bounded by its own timeout).
   */
  async #confirmRoom(): Promise<boolean> {
    const c = this.#confirmer;
    if (!c) return true;
    while (
      c.pending + Math.min(this.#pending.length, this.#batchSize) > this.#maxConfirmPending &&
      !this.#stopping
    ) {
      if (!this.#confirmFull) {
        this.#confirmFull = true;
        this.#log(
          `ingest: ${c.pending} readings await durability (limit ${this.#maxConfirmPending}); writing waits`,
        );
      }
      await sleep(100);
      if (this.#abandonWrites) return false;
    }
    if (this.#confirmFull)
      this.#log("ingest: readings awaiting durability are below the limit; writing again");
    this.#confirmFull = false;
    return !this.#abandonWrites;
  }

  /**
   * Store and dead-letter the batch (retrying while the store is down), then acknowledge it. Data flows
   * one way: the store answers which lines it refused, and only what it accepted is committed to the
   * replay window and counted as written.
   */
  async #commit(batch: Item[]): Promise<boolean> {
    const writes: { item: Item; line: string }[] = [];
    const dead: DeadLetter[] = [];
    for (const item of batch) {
      if (item.outcome.kind === "write") writes.push({ item, line: item.outcome.line });
      else if (item.outcome.kind === "rejected")
        dead.push(deadLetterOf(item.msg, item.outcome.reason, item.outcome.detail, item.outcome.sensorId));
    }
    if (!(await this.#retrying("dead-letter file", () => this.#o.deadLetters.append(dead)))) return false;
    let refused: RefusedLine[] = [];
    const stored = await this.#retrying(
      "store",
      async () => {
        refused = await this.#writeLines(writes.map((w) => w.line));
      },
      (up) => {
        this.#storeUp = up;
        if (!up) this.#metrics.storeFailures.inc();
      },
    );
    if (!stored) return false;
    const refusedItems = new Map(refused.map((r) => [writes[r.index]!.item, r.detail]));
    const refusedDead = [...refusedItems].map(([item, detail]) =>
      deadLetterOf(item.msg, STORE_REJECTED, detail, item.outcome.sensorId),
    );
    if (!(await this.#retrying("dead-letter file", () => this.#o.deadLetters.append(refusedDead))))
      return false;
    const now = Date.now();
    let dropped = 0;
    const receiver = this.#receiver;
    const storedReadings: StoredReading[] = [];
    receiver?.batch(() => {
      for (const item of batch) {
        const o = item.outcome;
        if (o.kind === "write" && refusedItems.has(item)) {
          if (o.position) this.#o.classifier.release(o.sensorId, o.position);
          this.account.rejected(o.sensorId, STORE_REJECTED);
        } else if (o.kind === "write") {
          const gapDelta = o.position ? this.#o.classifier.commit(o.sensorId, o.position) : 0;
          if (o.deviceTs !== undefined) {
            const latency = now - o.deviceTs;
            this.account.written(o.sensorId, latency);
            this.#metrics.latency.observe(latency / 1000);
            this.#metrics.latencyRecent.observe(latency);
          }
          if (gapDelta !== 0) this.account.gaps(o.sensorId, gapDelta);
          if (o.position) storedReadings.push({ sensorId: o.sensorId, ...o.position, line: o.line });
        } else if (o.kind === "duplicate") {
          this.account.duplicate(o.sensorId);
          if (o.position) this.#confirmer?.duplicate(o.sensorId, o.position.boot, o.position.seq);
        } else {
          this.account.rejected(o.sensorId, o.reason);
        }
        if (!receiver?.ack(item.msg)) dropped++;
      }
    });
    if (dropped > 0)
      this.#log(
        `ingest: ${dropped} written messages belong to a lost connection; the broker re-delivers them`,
      );
    this.#confirmer?.stored(storedReadings, now);
    return true;
  }

  /** Writes the lines and returns those the store refused outright (HTTP 4xx), isolated by halving. */
  async #writeLines(lines: string[]): Promise<RefusedLine[]> {
    const started = performance.now();
    const refused = await writeIsolatingRefused(this.#o.store, lines);
    if (refused.length > 0)
      this.#log(`ingest: the store refused ${refused.length} of ${lines.length} lines; dead-lettered`);
    this.#metrics.storeWrite.observe((performance.now() - started) / 1000);
    return refused;
  }

  /** Runs op until it succeeds (or writes are abandoned); `health` hears each success and failure. */
  async #retrying(what: string, op: () => Promise<void>, health?: (up: boolean) => void): Promise<boolean> {
    let delay = this.#o.retryMinMs ?? 200;
    let failures = 0;
    for (;;) {
      try {
        await op();
        if (failures > 0) this.#log(`ingest: ${what} is back after ${failures} failed attempts`);
        health?.(true);
        return true;
      } catch (err) {
        failures++;
        health?.(false);
        if (failures === 1 || failures % 20 === 0)
          this.#log(
            `ingest: ${what} write failed (${err instanceof Error ? err.message : String(err)}); holding ${this.held} acknowledgements, retrying`,
          );
        if (this.#abandonWrites) return false;
        await sleep(delay);
        if (this.#abandonWrites) return false;
        delay = Math.min(delay * 2, this.#o.retryMaxMs ?? 5000);
      }
    }
  }

  /** Writes the account (cumulative since start) to the store; a failure waits for the next round. */
  async writeAccount(): Promise<void> {
    const now = Date.now();
    const lines = this.account.devices().map((d) => accountLine(d.sensorId, d, now));
    for (const [reason, n] of Object.entries(this.account.rejectedByReason()))
      lines.push(rejectedLine(reason, n, now));
    try {
      await this.#o.store.write(lines);
    } catch (err) {
      this.#log(`ingest: writing the account failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /**
   * Graceful stop: take no more messages, write and acknowledge what is held, write the
   * account, disconnect (the session stays with the broker). If the store stays down for
   * `timeoutMs`, the held messages are left unacknowledged for the next run.
   */
  stop(timeoutMs = 15_000): Promise<void> {
    this.#stopped ??= this.#stop(timeoutMs);
    return this.#stopped;
  }

  async #stop(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    if (this.#accountTimer) clearInterval(this.#accountTimer);
    const deadline = Date.now() + timeoutMs;
    while ((this.#pending.length > 0 || this.#writing) && Date.now() < deadline) {
      this.#kick();
      await Promise.race([this.#writing ?? Promise.resolve(), sleep(Math.max(1, deadline - Date.now()))]);
    }
    if (this.#pending.length > 0 || this.#writing) {
      this.#log(`ingest: store unavailable at shutdown; ${this.held} messages stay with the broker`);
      this.#abandonWrites = true;
      // A write stuck in the store's HTTP timeout must not hold the shutdown; its acks are never sent.
      if (this.#writing) await Promise.race([this.#writing, sleep(1000)]);
    } else if ((this.#o.accountIntervalMs ?? 10_000) > 0) {
      await this.writeAccount();
    }
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    await this.#confirmer?.stop();
    if (this.#client) await this.#client.endAsync(false);
    await this.#o.source?.stop();
    if (this.#metricsServer) await new Promise<void>((r) => this.#metricsServer?.close(() => r()));
  }
}

/** Board status (online/offline) is stored but is not telemetry: it stays out of the message account. */
function isStatus(o: Outcome): boolean {
  return o.kind === "write" && o.deviceTs === undefined;
}

function deadLetterOf(msg: HeldMessage, reason: string, detail: string, sensorId: string): DeadLetter {
  return {
    time: new Date().toISOString(),
    reason,
    detail,
    topic: msg.topic,
    sensor_id: sensorId,
    payload_b64: msg.payload.toString("base64"),
  };
}
