// The firmware app with its outbox ring (config outboxPartition, the platform's flash): a power cut with
// readings unsent or unconfirmed, then a boot over the same flash and NVS. The readings go again with their
// original boot, seq and sealed bytes; what the store confirmed does not.
import { describe, expect, it } from "vitest";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { decodeTelemetryMessage } from "../../src/payload/telemetry-message";
import { encodeConfirmation } from "../../src/telemetry/confirmation";
import type { SeqRange } from "../../src/telemetry/confirmation";
import { downlinkTopic, telemetryTopic } from "../../src/telemetry/topics";
import NorFlashModel from "../models/nor-flash-model";
import { bootDevice, DEVICE_ID, PAYLOAD_KEY, provision } from "./harness";
import type { Device } from "./harness";
import { FakeBroker } from "./shims/fake-broker";
import type { BrokerMessage } from "./shims/fake-broker";
import { MemoryPreference } from "./shims/memory-preference";
import { VirtualTimers } from "./shims/virtual-timers";

const STORED = downlinkTopic(DEVICE_ID, "stored");
const TELEMETRY = telemetryTopic(DEVICE_ID);

function idOf(m: BrokerMessage): string {
  const r = decodeTelemetryMessage(m.topic, m.payload, {
    kind: "encrypted",
    aead: nodeAead,
    keyFor: (k) => (k === 2 ? PAYLOAD_KEY : undefined),
  });
  if (!r.ok) throw new Error(r.error.message);
  return `${r.value.boot}/${r.value.seq}`;
}

const hex = (m: BrokerMessage): string => Buffer.from(m.payload).toString("hex");

interface Board {
  store: MemoryPreference;
  flash: NorFlashModel | undefined;
}

/** Boots the device over the board's NVS and flash, on a fresh timeline and broker (RAM starts empty). */
function boot(board: Board, config: Record<string, unknown> = {}) {
  const timers = new VirtualTimers();
  const broker = new FakeBroker(timers);
  const device: Device = bootDevice({
    store: board.store,
    timers,
    broker,
    config: {
      confirmations: "on",
      confirmTimeout: 60_000,
      reconnectMinMs: 500,
      reconnectMaxMs: 1_000,
      ...config,
    },
    ...(board.flash ? { outboxFlash: board.flash } : {}),
  });
  const confirm = (ranges: SeqRange[], b = device.app.boot!) =>
    broker.deliver(DEVICE_ID, STORED, encodeConfirmation({ boot: b, ranges }));
  return { ...device, timers, broker, confirm };
}

function newBoard(withFlash: boolean): Board {
  const store = new MemoryPreference();
  provision(store);
  return { store, flash: withFlash ? new NorFlashModel({ sectors: 16 }) : undefined };
}

/** The first boot: 8 readings, all PUBACKed, 0..2 confirmed, then the power goes (app.stop is only its timers). */
async function firstBootThenCut(board: Board) {
  const d = boot(board);
  await d.timers.advance(8_500);
  expect(d.app.boot).toBe(1);
  const sent = d.broker.published(TELEMETRY);
  expect(sent.map(idOf)).toEqual(["1/0", "1/1", "1/2", "1/3", "1/4", "1/5", "1/6", "1/7"]);
  expect(d.confirm([{ from: 0, to: 2 }])).toBe(true);
  await d.timers.advance(1_000); // one more reading: the ring's "forget through 2" marker goes with it
  d.app.stop();
  return { bytes: new Map(sent.map((m) => [idOf(m), hex(m)])) };
}

describe("a board with an outbox ring", () => {
  it("after a power cut sends every unconfirmed reading of the boot before, byte for byte, first", async () => {
    const board = newBoard(true);
    const first = await firstBootThenCut(board);
    const d = boot(board);
    await d.timers.advance(2_500);
    expect(d.app.boot).toBe(2);
    expect(d.log.text()).toMatch(/6 reading\(s\) of earlier boots recovered, 6 queued/);
    const sent = d.broker.published(TELEMETRY);
    const ids = sent.map(idOf);
    // 1/8 was taken after the confirmation and before the cut: unconfirmed, so it goes too.
    expect(ids.slice(0, 6)).toEqual(["1/3", "1/4", "1/5", "1/6", "1/7", "1/8"]);
    expect(ids.slice(6)).toEqual(["2/0", "2/1"]);
    for (const m of sent.slice(0, 5)) expect(hex(m)).toBe(first.bytes.get(idOf(m)));
    // The ingest confirms the earlier boot's readings: the session applies it to them (not "foreign").
    expect(d.confirm([{ from: 0, to: 8 }], 1)).toBe(true);
    expect(d.app.session!.counters.confirmationsForeign).toBe(0);
    expect(d.app.outbox!.pending().every((e) => e.seq >= 0)).toBe(true);
    await d.timers.advance(1_000);
    d.app.stop();
    // A third boot finds nothing of boot 1 any more.
    const third = boot(board);
    await third.timers.advance(500);
    expect(third.app.journal!.counts.recovered).toBe(3); // boot 2's 0..2, unconfirmed
    const again = third.broker.published(TELEMETRY).map(idOf);
    expect(again.filter((id) => id.startsWith("1/"))).toEqual([]);
  });

  it("without the ring the same power cut loses them (the board boots with an empty outbox)", async () => {
    const board = newBoard(false);
    await firstBootThenCut(board);
    const d = boot(board);
    await d.timers.advance(2_500);
    expect(d.broker.published(TELEMETRY).map(idOf)).toEqual(["2/0", "2/1"]);
    expect(d.app.statsLine()).toContain("flash ring none");
  });
});
