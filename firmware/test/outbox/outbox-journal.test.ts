// The outbox over the flash ring (src/outbox/outbox-journal.ts): what a reboot or a power cut finds again.
// Against the NOR flash model, so a cut inside a write is covered too.
import { describe, expect, it } from "vitest";
import type { FlashArea } from "../../src/outbox/flash-area";
import OutboxJournal from "../../src/outbox/outbox-journal";
import type { JournalItem } from "../../src/outbox/outbox-journal";
import NorFlashModel, { PowerCut } from "../models/nor-flash-model";

const TOPIC = "electrolyser/elx-1/telemetry";

/** A reading's bytes: boot and seq in it, so a wrong identity shows. */
const payloadOf = (boot: number, seq: number): ArrayBuffer =>
  Uint8Array.from([boot & 0xff, seq & 0xff, (seq >> 8) & 0xff, 0x5a, 0xa5, seq % 7]).buffer;

function mount(flash: FlashArea, boot: number, capacity = 100): OutboxJournal<JournalItem> {
  return new OutboxJournal<JournalItem>({
    flash,
    boot,
    capacity,
    item: (payload) => ({ topic: TOPIC, payload }),
    maxPayload: 64, // small sectors in some tests
  });
}

/** Queues `n` readings of the journal's boot, as the sampler does. */
function take(j: OutboxJournal<JournalItem>, n: number): void {
  for (let i = 0; i < n; i++) j.outbox.enqueue((seq) => ({ topic: TOPIC, payload: payloadOf(j.boot, seq) }));
}

/** What the outbox of a freshly mounted journal holds: [boot, seq] read back from the payload bytes. */
function held(j: OutboxJournal<JournalItem>): [number, number][] {
  return j.outbox.pending().map((e) => {
    const b = new Uint8Array(e.item.payload);
    return [b[0]!, b[1]! | (b[2]! << 8)];
  });
}

/** Sends everything sendable and has it PUBACKed-and-delivered (kept until confirmed). */
function deliverAll(j: OutboxJournal<JournalItem>): void {
  for (const e of j.outbox.takeSendable(1000)) j.outbox.markDelivered(e.seq, 0);
}

describe("outbox over the flash ring", () => {
  it("a restart recovers every unconfirmed reading, in order, with its boot, seq and bytes", () => {
    const flash = new NorFlashModel({ sectors: 8 });
    const first = mount(flash, 1);
    take(first, 10);
    deliverAll(first);
    // Power cut: nothing more is written. The next boot finds all ten, ahead of its own readings.
    const second = mount(flash, 2);
    expect(second.counts).toMatchObject({ recovered: 10, loaded: 10 });
    expect(held(second)).toEqual(Array.from({ length: 10 }, (_, i) => [1, i]));
    expect(second.outbox.pending().map((e) => e.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i - 10));
    expect(second.outbox.pending().map((e) => new Uint8Array(e.item.payload))).toEqual(
      Array.from({ length: 10 }, (_, i) => new Uint8Array(payloadOf(1, i))),
    );
    expect(second.outbox.nextSeq).toBe(0);
    take(second, 2);
    expect(held(second).slice(-2)).toEqual([
      [2, 0],
      [2, 1],
    ]);
  });

  it("confirmed and acknowledged readings are not sent again after a restart", () => {
    const flash = new NorFlashModel({ sectors: 8 });
    const first = mount(flash, 1);
    take(first, 10);
    deliverAll(first);
    first.outbox.confirm([{ from: 0, to: 3 }]);
    first.outbox.confirm([{ from: 6, to: 6 }]); // out of order: the ring forgets a prefix only
    take(first, 1); // the "forget through 3" marker goes with the next append
    const second = mount(flash, 2);
    expect(held(second).map(([, s]) => s)).toEqual([4, 5, 6, 7, 8, 9, 10]);
    // PUBACK semantics (confirmations off): acknowledged is enough.
    for (const e of second.outbox.takeSendable(3)) second.outbox.ack(e.seq);
    take(second, 1);
    const third = mount(flash, 3);
    expect(held(third)).toEqual([
      [1, 7],
      [1, 8],
      [1, 9],
      [1, 10],
      [2, 0],
    ]);
  });

  it("a confirmation for the earlier boot forgets its readings for good", () => {
    const flash = new NorFlashModel({ sectors: 8 });
    take(mount(flash, 1), 5);
    const second = mount(flash, 2);
    deliverAll(second);
    expect(second.holds(1)).toBe(true);
    expect(second.holds(2)).toBe(false);
    expect(second.confirmEarlier(1, [{ from: 0, to: 2 }])).toBe(3);
    expect(held(second)).toEqual([
      [1, 3],
      [1, 4],
    ]);
    expect(second.confirmEarlier(1, [{ from: 3, to: 4 }])).toBe(2);
    expect(second.holds(1)).toBe(false);
    take(second, 1);
    expect(held(mount(flash, 3))).toEqual([[2, 0]]);
  });

  it("a reading the full RAM outbox drops stays in the ring and is put back once there is room", () => {
    const flash = new NorFlashModel({ sectors: 8 });
    const first = mount(flash, 1, 8);
    take(first, 20); // an outage: 0..11 dropped from RAM, 12..19 held
    expect(first.outbox.dropped).toBe(12);
    expect(first.counts.ramDropped).toBe(12);
    expect(first.spilled).toBe(12);
    // Back online: what RAM holds is delivered and confirmed; the confirmation frees the room, and the oldest
    // spilled readings are read back into it at once (8 places, 1 kept for new readings).
    deliverAll(first);
    first.outbox.confirm([{ from: 12, to: 19 }]);
    expect(first.counts.restored).toBe(7);
    take(first, 1); // seq 20
    expect(held(first)).toEqual([0, 1, 2, 3, 4, 5, 6, 20].map((s) => [1, s]));
    expect(first.outbox.pending().map((e) => e.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 20]);
    // Sent in order, oldest first, with the bytes they were sealed with.
    const sent = first.outbox.takeSendable(3);
    expect(sent.map((e) => e.seq)).toEqual([0, 1, 2]);
    expect(new Uint8Array(sent[0]!.item.payload)).toEqual(new Uint8Array(payloadOf(1, 0)));
    for (let round = 0; round < 10 && first.spilled > 0; round++) {
      deliverAll(first);
      first.outbox.confirm(first.outbox.pending().map((e) => ({ from: e.seq, to: e.seq })));
      take(first, 1);
    }
    expect(first.spilled).toBe(0);
    expect(first.counts.restored).toBe(12);
    // Everything but the newest confirmed: a reboot finds only what is not.
    deliverAll(first);
    first.outbox.confirm(first.outbox.pending().map((e) => ({ from: e.seq, to: e.seq })));
    const last = first.outbox.nextSeq;
    take(first, 1);
    expect(held(mount(flash, 2, 8))).toEqual([[1, last]]);
  });

  it("the ring forgets by prefix: a stuck reading keeps what is above it, and nothing is tracked per seq", () => {
    const flash = new NorFlashModel({ sectors: 8 });
    const first = mount(flash, 1, 4);
    take(first, 6); // seqs 0 and 1 dropped from RAM
    for (const e of first.outbox.takeSendable(10)) first.outbox.ack(e.seq); // 2..5 acknowledged
    // Read back as the acknowledgements freed room: 0 and 1 went back into RAM.
    expect(held(first)).toEqual([0, 1].map((s) => [1, s]));
    take(first, 1);
    // A power cut now: the ring forgot nothing at or above 0 (it is told prefixes only): 2..5 go again too.
    const second = mount(flash, 2, 4);
    expect(second.counts).toMatchObject({ recovered: 7, loaded: 3 }); // one place kept for the new boot
    expect(second.spilled).toBe(4);
    expect(held(second)).toEqual([0, 1, 2].map((s) => [1, s]));
    for (const e of second.outbox.takeSendable(10)) second.outbox.ack(e.seq); // each ack: one read back
    take(second, 1);
    expect(second.counts.restored).toBe(3);
    expect(held(second)).toEqual([
      [1, 3],
      [1, 4],
      [1, 5],
      [2, 0],
    ]);
    // In order behind each other, ahead of boot 2's: boot 1's block is -7..-1 (its seqs 0..6).
    expect(second.outbox.pending().map((e) => e.seq)).toEqual([-4, -3, -2, 0]);
    expect(second.holds(1)).toBe(true);
    expect(second.confirmEarlier(1, [{ from: 0, to: 6 }])).toBe(4); // 3..5 in RAM, 6 still spilled
    expect(second.spilled).toBe(0);
    expect(second.holds(1)).toBe(false);
    take(second, 1);
    expect(held(mount(flash, 3, 4))).toEqual([
      [2, 0],
      [2, 1],
    ]);
  });

  it("an outage longer than the ring: what the ring reclaimed is dropped from the spill, the rest goes", () => {
    const flash = new NorFlashModel({ sectors: 3, sectorSize: 512 }); // 17 readings a sector
    const first = mount(flash, 1, 8);
    take(first, 100);
    expect(first.ringDropped).toBeGreaterThan(0);
    deliverAll(first);
    first.outbox.confirm(first.outbox.pending().map((e) => ({ from: e.seq, to: e.seq })));
    const seen: number[] = [];
    for (let round = 0; round < 40 && first.spilled > 0; round++) {
      take(first, 1);
      deliverAll(first);
      for (const e of first.outbox.pending()) seen.push(e.seq);
      first.outbox.confirm(first.outbox.pending().map((e) => ({ from: e.seq, to: e.seq })));
    }
    expect(first.spilled).toBe(0);
    // Every reading of the outage is sent (from RAM or read back, once) or counted by the ring, which reclaims
    // its oldest sector while the drain still fills it (the count also takes in reclaimed readings the store
    // had confirmed, so it is an upper bound).
    expect(new Set(seen).size).toBe(seen.length);
    const sent = new Set([...seen, ...Array.from({ length: 8 }, (_, i) => 92 + i)]);
    const unsent = Array.from({ length: 100 }, (_, i) => i).filter((s) => !sent.has(s));
    expect(100 - unsent.length).toBeGreaterThan(34); // at least the two sectors before the head's
    expect(first.ringDropped).toBeGreaterThanOrEqual(unsent.length);
    expect(first.counts.restored).toBeGreaterThan(20);
  });

  it("ring full: the oldest readings are dropped and counted, the newest recovered", () => {
    const flash = new NorFlashModel({ sectors: 3, sectorSize: 512 });
    const first = mount(flash, 1, 1000);
    take(first, 100); // 28 bytes each in flash: 17 a sector
    expect(first.ringDropped).toBeGreaterThan(0);
    const second = mount(flash, 2, 1000);
    const seqs = held(second).map(([, s]) => s);
    expect(seqs.length).toBeGreaterThanOrEqual(34); // at least the two sectors before the head's
    expect(seqs.length + first.ringDropped).toBe(100);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => 100 - seqs.length + i));
  });

  it("a power cut inside any write loses only the reading being appended", () => {
    for (let budget = 0; budget < 400; budget += 3) {
      const flash = new NorFlashModel({ sectors: 4, sectorSize: 512, seed: budget + 1 });
      const first = mount(flash, 1);
      take(first, 3);
      first.outbox.confirm([{ from: 0, to: 0 }]);
      flash.cutAfter(budget);
      let appended = 3;
      try {
        for (let i = 0; i < 20; i++) {
          take(first, 1);
          if (first.counts.appendFailures > 0) break;
          appended++;
        }
      } catch (e) {
        if (!(e instanceof PowerCut)) throw e;
      }
      flash.powerOn();
      const seqs = held(mount(flash, 2)).map(([, s]) => s);
      // Every reading whose append returned is there, unless the confirmation marker made it: then 0 is gone too.
      const expected = Array.from({ length: appended }, (_, i) => i);
      expect([expected, expected.slice(1)]).toContainEqual(seqs);
    }
  });
});
