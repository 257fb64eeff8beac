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

  it("a reading the full RAM outbox drops stays in the ring and goes after the next boot", () => {
    const flash = new NorFlashModel({ sectors: 8 });
    const first = mount(flash, 1, 4);
    take(first, 6); // seqs 0 and 1 dropped from RAM
    expect(first.outbox.dropped).toBe(2);
    expect(first.counts.ramDropped).toBe(2);
    for (const e of first.outbox.takeSendable(10)) first.outbox.ack(e.seq); // 2..5 acknowledged
    take(first, 1);
    // The ring forgets prefixes only: stuck at 0, it keeps 2..5 too (sent again: the store absorbs them).
    // Only 4 fit the RAM outbox: the oldest four go first, the rest stay in flash for the boot after.
    const second = mount(flash, 2, 4);
    expect(second.counts).toMatchObject({ recovered: 7, loaded: 4 });
    expect(held(second)).toEqual([
      [1, 0],
      [1, 1],
      [1, 2],
      [1, 3],
    ]);
    for (const e of second.outbox.takeSendable(10)) second.outbox.ack(e.seq);
    take(second, 1);
    expect(held(mount(flash, 3, 4))).toEqual([
      [1, 4],
      [1, 5],
      [1, 6],
      [2, 0],
    ]);
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
