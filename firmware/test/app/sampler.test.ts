// The sampling loop's timestamps (src/app/sampler.ts): what the store needs of them.
import { describe, expect, it } from "vitest";
import Sampler from "../../src/app/sampler";
import type { OutboxMessage } from "../../src/app/mqtt-session";
import type { InstrumentSample, Timers } from "../../src/app/services";
import { Outbox } from "../../src/outbox/outbox";
import { decodeTelemetryMessage } from "../../src/payload/telemetry-message";
import { CHANNEL_NAMES } from "../../src/telemetry/channels";
import type { ChannelName } from "../../src/telemetry/channels";

const noTimers: Timers = {
  set: () => ({}),
  repeat: () => ({}),
  clear: () => undefined,
};
const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };

function sample(): InstrumentSample {
  const values = {} as Record<ChannelName, number | null>;
  for (const name of CHANNEL_NAMES) values[name] = 1;
  return { values, faults: [] };
}

/** Ticks the sampler at the given clock readings; returns the timestamps of the readings it queued. */
function stamps(clockReadings: number[], intervalMs = 1000): number[] {
  const outbox = new Outbox<OutboxMessage>({ capacity: 100 });
  let i = 0;
  const sampler = new Sampler({
    timers: noTimers,
    clock: { now: () => clockReadings[i++]! },
    log: silent,
    instruments: { sample },
    outbox,
    intervalMs,
    sensorId: "elx-0001",
    boot: 1,
    fw: "test",
    mode: { kind: "plain" },
    onQueued: () => undefined,
  });
  for (let k = 0; k < clockReadings.length; k++) sampler.tick();
  return outbox.pending().map((e) => {
    const r = decodeTelemetryMessage(e.item.topic, new Uint8Array(e.item.payload), { kind: "plain" });
    if (!r.ok) throw new Error(JSON.stringify(r.error));
    return r.value.ts;
  });
}

describe("sampler timestamps", () => {
  it("readings taken within one millisecond (late ticks after a stall) get distinct timestamps", () => {
    expect(stamps([5000, 5000, 5000, 5001, 6000])).toEqual([5000, 5001, 5002, 5003, 6000]);
  });

  it("leaves a clock stepped back by more than an interval as it is", () => {
    expect(stamps([10_000, 11_000, 4_000, 5_000])).toEqual([10_000, 11_000, 4_000, 5_000]);
  });
});
