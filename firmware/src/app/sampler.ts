// The sampling loop: every interval, one reading of all instruments becomes one outbox entry with the
// next sequence number. Nothing here waits on the network, so readings keep coming while the broker
// is away and the outbox (bounded) carries them until it is back.
import { CHANNEL_NAMES } from "../telemetry/channels";
import type { ChannelName } from "../telemetry/channels";
import type { Outbox } from "../outbox/outbox";
import { encodeTelemetryMessage } from "../payload/telemetry-message";
import type { PayloadMode, PayloadModeSource } from "../payload/telemetry-message";
import type { Reading } from "../telemetry/reading";
import { telemetryTopic } from "../telemetry/topics";
import type { OutboxMessage } from "./mqtt-session";
import type { Clock, InstrumentSample, Instruments, Log, TimerHandle, Timers } from "./services";

export interface SamplerOptions {
  timers: Timers;
  clock: Clock;
  log: Log;
  instruments: Instruments;
  outbox: Outbox<OutboxMessage>;
  intervalMs: number;
  sensorId: string;
  boot: number;
  fw: string;
  /** Fixed, or asked at each reading (the trust handler: the payload key of the identity slot in use). */
  mode: PayloadMode | PayloadModeSource;
  /** Called after each reading is queued (the session sends it). */
  onQueued: () => void;
}

export function allFaulted(): InstrumentSample {
  const values = {} as Record<ChannelName, number | null>;
  for (const name of CHANNEL_NAMES) values[name] = null;
  return { values, faults: [...CHANNEL_NAMES] };
}

function isPromise(v: InstrumentSample | Promise<InstrumentSample>): v is Promise<InstrumentSample> {
  return typeof (v as Promise<InstrumentSample>).then === "function";
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export default class Sampler {
  readonly #o: SamplerOptions;
  #timer: TimerHandle | undefined;
  #reportedDrops = 0;
  #queued = 0;
  #overruns = 0;
  #busy = false;
  #lastTs = -Infinity;
  /** One string for every reading: each outbox entry holds it until the reading is forgotten. */
  readonly #topic: string;

  constructor(options: SamplerOptions) {
    this.#o = options;
    this.#topic = telemetryTopic(options.sensorId);
  }

  /** Readings queued since start. */
  get queued(): number {
    return this.#queued;
  }
  /** Ticks skipped because the previous sample had not finished (a slow bus). */
  get overruns(): number {
    return this.#overruns;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = this.#o.timers.repeat(() => this.tick(), this.#o.intervalMs);
  }

  stop(): void {
    this.#o.timers.clear(this.#timer);
    this.#timer = undefined;
  }

  /** Takes one sample and queues it (later, when the instruments answer asynchronously). */
  tick(): void {
    const o = this.#o;
    if (this.#busy) {
      this.#overruns++;
      o.log.warn(`sampling: previous sample still running, tick skipped (${this.#overruns} so far)`);
      return;
    }
    // The reading's time is when sampling began, not when a slow bus finished. The store keeps one point per
    // device and millisecond (InfluxDB overwrites, VictoriaMetrics' dedup folds), so two readings taken within a
    // millisecond (ticks that fired together after a stall) go a millisecond apart; a clock stepped back by more
    // than an interval stays as it is, for the ingest to judge.
    let ts = o.clock.now();
    if (ts <= this.#lastTs && this.#lastTs - ts < o.intervalMs) ts = this.#lastTs + 1;
    this.#lastTs = ts;
    let result: InstrumentSample | Promise<InstrumentSample>;
    try {
      result = o.instruments.sample();
    } catch (e) {
      // A driver that throws is a fault on every channel, reported, not a stopped loop.
      o.log.error(`instruments: ${message(e)}`);
      result = allFaulted();
    }
    if (!isPromise(result)) {
      this.#queue(result, ts);
      return;
    }
    this.#busy = true;
    result.then(
      (sample) => {
        this.#busy = false;
        this.#queue(sample, ts);
      },
      (e: unknown) => {
        this.#busy = false;
        o.log.error(`instruments: ${message(e)}`);
        this.#queue(allFaulted(), ts);
      },
    );
  }

  #queue(sample: InstrumentSample, ts: number): void {
    const o = this.#o;
    let seq: number | undefined;
    try {
      o.outbox.enqueue((s) => {
        seq = s;
        const reading: Reading = {
          sensorId: o.sensorId,
          seq: s,
          ts,
          boot: o.boot,
          fw: o.fw,
          values: sample.values,
          faults: sample.faults,
        };
        const mode = "kind" in o.mode ? o.mode : o.mode.payloadMode();
        const { topic, payload } = encodeTelemetryMessage(reading, mode, this.#topic);
        return { topic, payload: exactBuffer(payload) };
      });
    } catch (e) {
      o.log.error(`reading ${seq ?? "?"} not queued: ${message(e)}`);
      return;
    }
    this.#queued++;
    const dropped = o.outbox.dropped;
    if (dropped > this.#reportedDrops) {
      o.log.warn(`outbox full (${o.outbox.capacity}): ${dropped} oldest reading(s) dropped since boot`);
      this.#reportedDrops = dropped;
    }
    o.onQueued();
  }
}

function exactBuffer(bytes: Uint8Array): ArrayBuffer {
  if (
    bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength &&
    bytes.buffer instanceof ArrayBuffer
  )
    return bytes.buffer;
  return bytes.slice().buffer as ArrayBuffer;
}
