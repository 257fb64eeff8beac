// End-to-end confirmations in the firmware's MqttSession (the one the emulated boards run too), on virtual
// time against the ECMA-419 client shim: a reading is forgotten only once the "ingest" (the test) confirms it,
// whatever order PUBACKs, confirmations, reconnects and timeouts come in.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { decodeTelemetryMessage } from "../../src/payload/telemetry-message";
import { encodeConfirmation } from "../../src/telemetry/confirmation";
import type { SeqRange } from "../../src/telemetry/confirmation";
import { downlinkFilter, downlinkTopic, telemetryTopic } from "../../src/telemetry/topics";
import { bootDevice, DEVICE_ID, PAYLOAD_KEY, provision } from "./harness";
import type { Device } from "./harness";
import { FakeBroker } from "./shims/fake-broker";
import type { BrokerMessage } from "./shims/fake-broker";
import { MemoryPreference } from "./shims/memory-preference";
import { VirtualTimers } from "./shims/virtual-timers";

const TOPIC = telemetryTopic(DEVICE_ID);
const STORED = downlinkTopic(DEVICE_ID, "stored");

function seqOf(m: BrokerMessage): number {
  const r = decodeTelemetryMessage(m.topic, m.payload, {
    kind: "encrypted",
    aead: nodeAead,
    keyFor: (k) => (k === 2 ? PAYLOAD_KEY : undefined),
  });
  if (!r.ok) throw new Error(r.error.message);
  return r.value.seq;
}

function start(config: Record<string, unknown>): Device & { timers: VirtualTimers; broker: FakeBroker } {
  const timers = new VirtualTimers();
  const store = new MemoryPreference();
  const broker = new FakeBroker(timers);
  provision(store);
  const device = bootDevice({
    store,
    timers,
    broker,
    config: { confirmTimeout: 5_000, reconnectMinMs: 500, reconnectMaxMs: 1_000, ...config },
  });
  return { ...device, timers, broker };
}

const confirm = (d: { broker: FakeBroker; app: Device["app"] }, ranges: SeqRange[], boot = d.app.boot!) =>
  d.broker.deliver(DEVICE_ID, STORED, encodeConfirmation({ boot, ranges }));

const heldSeqs = (d: Device): number[] => d.app.outbox!.pending().map((e) => e.seq);

describe("a board with confirmations on", () => {
  it("subscribes to its downlink tree on every connection", async () => {
    const d = start({ confirmations: "on" });
    await d.timers.advance(1_500);
    expect([...(d.broker.subscriptions.get(DEVICE_ID) ?? [])]).toEqual([downlinkFilter(DEVICE_ID)]);
    d.broker.subscriptions.clear(); // a broker that lost the session (a crash before it saved)
    d.broker.stop();
    d.broker.start();
    await d.timers.advance(2_000);
    expect([...(d.broker.subscriptions.get(DEVICE_ID) ?? [])]).toEqual([downlinkFilter(DEVICE_ID)]);
  });

  it("keeps readings after their PUBACK and forgets exactly the confirmed ones", async () => {
    const d = start({ confirmations: "on" });
    await d.timers.advance(5_500);
    expect(d.app.session!.counters.acked).toBe(5);
    expect(heldSeqs(d)).toEqual([0, 1, 2, 3, 4]);
    expect(d.app.outbox!.delivered).toBe(5);
    expect(confirm(d, [{ from: 0, to: 2 }])).toBe(true);
    expect(heldSeqs(d)).toEqual([3, 4]);
    expect(d.app.session!.counters.confirmed).toBe(3);
    expect(d.app.session!.confirmationState).toBe("present");
    expect(d.app.statsLine()).toContain("confirmations present (confirmed 3, awaiting 2");
  });

  it("applies a confirmation that overtakes the PUBACK, and the late PUBACK changes nothing", async () => {
    const d = start({ confirmations: "on", maxInflight: 4 });
    await d.timers.advance(1_200);
    d.broker.holdPubacks = true;
    await d.timers.advance(3_000); // 1..3 in flight, unacknowledged
    expect(d.app.outbox!.inflight).toBe(3);
    confirm(d, [{ from: 0, to: 3 }]);
    expect(heldSeqs(d)).toEqual([]);
    expect(d.app.outbox!.inflight).toBe(0);
    d.broker.releasePubacks();
    await d.timers.advance(2_000);
    expect(heldSeqs(d)).toEqual([4, 5]);
    // Nothing confirmed went again.
    expect(d.broker.published(TOPIC).map(seqOf)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("ignores duplicate and old confirmations, and those for another boot", async () => {
    const d = start({ confirmations: "on" });
    await d.timers.advance(6_500);
    confirm(d, [{ from: 0, to: 3 }]);
    confirm(d, [{ from: 0, to: 3 }]);
    confirm(d, [{ from: 0, to: 1 }]);
    expect(heldSeqs(d)).toEqual([4, 5]);
    expect(d.app.session!.counters.confirmed).toBe(4);
    confirm(d, [{ from: 0, to: 100 }], d.app.boot! + 1);
    confirm(d, [{ from: 0, to: 100 }], d.app.boot! - 1);
    expect(heldSeqs(d)).toEqual([4, 5]);
    expect(d.app.session!.counters.confirmationsForeign).toBe(2);
  });

  it("refuses malformed or oversized downlink messages without throwing or dropping the connection", async () => {
    const d = start({ confirmations: "on" });
    await d.timers.advance(3_500);
    d.broker.deliver(DEVICE_ID, STORED, Uint8Array.of(1, 0, 0));
    d.broker.deliver(DEVICE_ID, STORED, new Uint8Array(4000));
    d.broker.deliver(DEVICE_ID, downlinkTopic(DEVICE_ID, "config"), Uint8Array.of(1));
    expect(d.app.session!.counters.confirmationsRejected).toBe(1);
    expect(d.app.session!.counters.downlinkIgnored).toBe(2);
    expect(d.app.session!.state).toBe("connected");
    expect(heldSeqs(d)).toEqual([0, 1, 2]);
    expect(d.log.text()).toContain("refused a confirmation (truncated");
  });

  it("reassembles a confirmation that arrives in fragments", async () => {
    const d = start({ confirmations: "on" });
    await d.timers.advance(3_500);
    const bytes = encodeConfirmation({
      boot: d.app.boot!,
      ranges: [
        { from: 0, to: 0 },
        { from: 2, to: 2 },
      ],
    });
    d.broker.deliver(DEVICE_ID, STORED, bytes, 3);
    expect(heldSeqs(d)).toEqual([1]);
  });

  it("sends unconfirmed readings again, in order, when the confirmation times out, and backs the timeout off", async () => {
    const d = start({ confirmations: "on" });
    await d.timers.advance(3_500); // 0..2 PUBACKed by ~2 s
    await d.timers.advance(4_000); // the oldest (acked at ~1 s) is due at ~6 s
    const resent = d.broker
      .published(TOPIC)
      .filter((m) => m.duplicate)
      .map(seqOf);
    expect(resent.slice(0, 5)).toEqual([0, 1, 2, 3, 4]);
    expect(d.app.session!.counters.confirmationTimeouts).toBe(1);
    // The next timeout is twice as long: no second resend within 5 s.
    await d.timers.advance(5_000);
    expect(d.app.session!.counters.confirmationTimeouts).toBe(1);
    const last = d.app.outbox!.nextSeq - 1;
    confirm(d, [{ from: 0, to: last }]);
    expect(d.app.outbox!.size).toBe(0);
    await d.timers.advance(30_000);
    const again = d.broker.published(TOPIC).filter((m) => m.duplicate && seqOf(m) <= last).length;
    expect(again).toBe(resent.length);
  });

  it("after a reconnect sends every unconfirmed reading again before new ones, in order", async () => {
    const d = start({ confirmations: "on", maxInflight: 3, confirmTimeout: 60_000 });
    await d.timers.advance(6_500);
    confirm(d, [{ from: 0, to: 1 }]);
    d.broker.stop();
    await d.timers.advance(2_000);
    const before = d.broker.published(TOPIC).length;
    d.broker.start();
    await d.timers.advance(1_000);
    const after = d.broker.published(TOPIC).slice(before).map(seqOf);
    expect(after.slice(0, 6)).toEqual([2, 3, 4, 5, 6, 7]);
    expect(d.app.session!.counters.requeued).toBe(4);
  });

  it("loses nothing when the connection drops in the middle of a resend", async () => {
    const d = start({ confirmations: "on", maxInflight: 2 });
    d.broker.socketBytes = 400; // about one reading per socket drain: a resend takes a while
    await d.timers.advance(20_500);
    d.broker.stop();
    d.broker.start();
    await d.timers.advance(600); // reconnected, resending 0..19
    d.broker.stop(); // mid-resend
    await d.timers.advance(1_500);
    d.broker.start();
    await d.timers.advance(2_000);
    const all = d.broker.published(TOPIC).map(seqOf);
    const last = d.app.outbox!.nextSeq - 1;
    for (let s = 0; s <= last - 1; s++) expect(all).toContain(s);
    confirm(d, [{ from: 0, to: last }]);
    expect(d.app.outbox!.size).toBe(0);
  });

  it("drops the oldest when full, counting those the broker had PUBACKed apart", async () => {
    const d = start({ confirmations: "on", outboxCapacity: 4 });
    await d.timers.advance(6_500);
    expect(d.app.outbox!.size).toBe(4);
    expect(d.app.outbox!.dropped).toBe(2);
    expect(d.app.outbox!.droppedDelivered).toBe(2);
  });

  it("never falls back in mode on: readings wait however long the ingest is silent", async () => {
    const d = start({ confirmations: "on", outboxCapacity: 1000 });
    await d.timers.advance(120_000);
    expect(d.app.session!.confirmationState).toBe("awaiting");
    expect(d.app.outbox!.size).toBe(120);
  });
});

describe("a board with confirmations auto", () => {
  it("falls back to PUBACK semantics when none come, says so, and resumes when one does", async () => {
    const d = start({ confirmations: "auto" });
    await d.timers.advance(3_500);
    expect(d.app.outbox!.size).toBe(3);
    await d.timers.advance(4_000);
    expect(d.app.session!.confirmationState).toBe("absent");
    expect(d.app.outbox!.size).toBe(0);
    expect(d.app.session!.counters.releasedUnconfirmed).toBeGreaterThanOrEqual(3);
    expect(d.log.text()).toContain("falling back to PUBACK");
    expect(d.app.statsLine()).toContain("confirmations absent");
    await d.timers.advance(3_000);
    expect(d.app.outbox!.size).toBe(0); // forgotten on PUBACK now
    confirm(d, [{ from: 0, to: 0 }]);
    expect(d.app.session!.confirmationState).toBe("present");
    await d.timers.advance(2_000);
    expect(d.app.outbox!.delivered).toBe(2);
  });

  it("before any confirmation came, does not resend delivered readings on a reconnect (a PUBACK-only fleet gets no duplicates)", async () => {
    const d = start({ confirmations: "auto", confirmTimeout: 60_000 });
    await d.timers.advance(3_500);
    d.broker.stop();
    d.broker.start();
    await d.timers.advance(2_000);
    expect(d.broker.published(TOPIC).filter((m) => m.duplicate)).toEqual([]);
    confirm(d, [{ from: 0, to: 0 }]); // from now on it knows an ingest confirms
    d.broker.stop();
    d.broker.start();
    await d.timers.advance(2_000);
    expect(
      d.broker
        .published(TOPIC)
        .filter((m) => m.duplicate)
        .map(seqOf)[0],
    ).toBe(1);
  });

  it("with no ingest and an outbox smaller than the timeout's worth, loses no reading: only PUBACKed ones make room", async () => {
    // 60 s timeout, 1 reading/s, room for 20: before it falls back the board holds more than fits. The ones it
    // lets go are the oldest, already PUBACKed (all a PUBACK-only fleet asks of it); every reading reaches the
    // broker, once.
    const d = start({ confirmations: "auto", confirmTimeout: 60_000, outboxCapacity: 20 });
    await d.timers.advance(45_500);
    const outbox = d.app.outbox!;
    expect(d.app.session!.confirmationState).toBe("awaiting");
    expect(outbox.size).toBeLessThanOrEqual(20);
    expect(outbox.dropped).toBeGreaterThan(0);
    expect(outbox.droppedDelivered).toBe(outbox.dropped);
    await d.timers.advance(30_000); // past the timeout: falls back and forgets what it held
    expect(d.app.session!.confirmationState).toBe("absent");
    expect(outbox.delivered).toBe(0);
    const seqs = d.broker.published(TOPIC).map(seqOf);
    expect(seqs).toEqual([...Array(outbox.nextSeq - outbox.size).keys()]);
  });

  it("stays with confirmations once they came, through an ingest outage longer than the timeout", async () => {
    const d = start({ confirmations: "auto" });
    await d.timers.advance(2_500);
    confirm(d, [{ from: 0, to: 1 }]);
    await d.timers.advance(30_000);
    expect(d.app.session!.confirmationState).toBe("present");
    expect(d.app.outbox!.size).toBe(30);
  });
});

describe("a board with confirmations off", () => {
  it("still subscribes (trust and config ride on the downlink), and forgets each reading on PUBACK", async () => {
    const d = start({ confirmations: "off" });
    await d.timers.advance(3_500);
    expect([...(d.broker.subscriptions.get(DEVICE_ID) ?? [])]).toEqual([downlinkFilter(DEVICE_ID)]);
    // A confirmation is not applied: the readings were forgotten on PUBACK already.
    confirm(d, [{ from: 0, to: 2 }]);
    expect(d.app.session!.counters.confirmations).toBe(0);
    expect(d.app.outbox!.size).toBe(0);
    expect(d.app.session!.confirmationState).toBe("off");
  });
});

/** Merges a set of seqs into at most `max` ranges (the newest kept), as the ingest's confirmer does. */
function toRanges(seqs: Iterable<number>, max = 8): SeqRange[] {
  const sorted = [...new Set(seqs)].sort((a, b) => a - b);
  const out: SeqRange[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s === last.to + 1) last.to = s;
    else out.push({ from: s, to: s });
  }
  return out.slice(-max);
}

describe("any interleaving of PUBACKs, confirmations, broker crashes and timeouts", () => {
  it("the board forgets only confirmed readings, and once all are confirmed holds none", async () => {
    type Step =
      | { t: "advance"; ms: number }
      | { t: "crash" } // broker dies and comes back without what it had (it never saved)
      | { t: "holdPubacks"; on: boolean }
      | { t: "confirm"; lag: number }; // the ingest confirms what reached the broker, except the newest `lag`
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ t: fc.constant("advance" as const), ms: fc.integer({ min: 1, max: 4_000 }) }),
      fc.record({ t: fc.constant("crash" as const) }),
      fc.record({ t: fc.constant("holdPubacks" as const), on: fc.boolean() }),
      fc.record({ t: fc.constant("confirm" as const), lag: fc.integer({ min: 0, max: 5 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 25 }), async (steps) => {
        const d = start({ confirmations: "on", maxInflight: 3, outboxCapacity: 1000 });
        // What the store durably holds: only what reached the broker and was then confirmed.
        const confirmed = new Set<number>();
        let seenUpTo = 0; // broker messages before this index survived into the store's view
        const reachedStore = new Set<number>();
        const ingest = (lag: number) => {
          const msgs = d.broker.published(TOPIC);
          for (const m of msgs.slice(seenUpTo, Math.max(seenUpTo, msgs.length - lag)))
            reachedStore.add(seqOf(m));
          seenUpTo = Math.max(seenUpTo, msgs.length - lag);
          for (const s of reachedStore) confirmed.add(s);
          if (confirmed.size > 0) confirm(d, toRanges(confirmed));
        };
        for (const s of steps) {
          if (s.t === "advance") await d.timers.advance(s.ms);
          else if (s.t === "crash") {
            // What the broker had not passed on to the store is gone with it.
            seenUpTo = d.broker.published(TOPIC).length;
            d.broker.stop();
            d.broker.start();
          } else if (s.t === "holdPubacks") {
            if (s.on) d.broker.holdPubacks = true;
            else d.broker.releasePubacks();
          } else ingest(s.lag);
          // The invariant: every reading taken is held by the board or confirmed stored.
          const held = new Set(heldSeqs(d));
          for (let seq = 0; seq < d.app.outbox!.nextSeq; seq++)
            if (!held.has(seq)) expect(confirmed.has(seq)).toBe(true);
        }
        // Liveness: the broker stays up, the ingest confirms everything; the outbox empties.
        d.broker.releasePubacks();
        d.app.sampler!.stop();
        for (let i = 0; i < 8 && d.app.outbox!.size > 0; i++) {
          await d.timers.advance(12_000);
          ingest(0);
        }
        expect(d.app.outbox!.size).toBe(0);
        d.app.stop();
      }),
      { numRuns: 60 },
    );
  });
});
