/**
 * When does the broker let go of a message? Only after the store accepted it. These tests use
 * the real broker and a store whose answer the test controls, and observe the broker's side:
 * a message not acknowledged comes again to the next session with the same client id.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BatchStore } from "../../src/ingest/store-writer";
import { StoreRejectedError } from "../../src/ingest/store-writer";
import type { TestFleet } from "../../testkit/ingest/fleet-publisher";
import {
  connectFleet,
  readDeadLetters,
  startIngest,
  startTestStack,
  waitUntil,
  type TestStack,
} from "./helpers/stack";

/** A store that holds every write until release(), recording what it was given. */
class GatedStore implements BatchStore {
  lines: string[] = [];
  #open = false;
  #waiters: (() => void)[] = [];
  fail = false;
  async write(lines: readonly string[]): Promise<void> {
    while (!this.#open) await new Promise<void>((r) => this.#waiters.push(r));
    if (this.fail) throw new Error("store down");
    this.lines.push(...lines);
  }
  release(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) w();
  }
}

class RecordingStore implements BatchStore {
  lines: string[] = [];
  async write(lines: readonly string[]): Promise<void> {
    this.lines.push(...lines);
  }
}

let s: TestStack;
let fleet: TestFleet;

beforeAll(async () => {
  // Each test keeps an ingest session of its own (client ids ingest-acks/-slow/-picky) on the one ingest certificate.
  s = await startTestStack({ devices: 2, bindClientIdToIdentity: false });
  fleet = await connectFleet(s, { encrypted: false });
});

afterAll(async () => {
  await fleet?.end();
  await s?.cleanup();
});

const seqsOf = (lines: string[]) => lines.map((l) => Number(/seq=(\d+)i/.exec(l)?.[1])).sort((a, b) => a - b);

describe("acknowledgements held until the store accepted", () => {
  it("keeps receiving while acks are held, honours the Receive Maximum, and the broker re-delivers what was never acked", async () => {
    const gated = new GatedStore();
    const first = await startIngest(s, {
      encrypted: false,
      store: gated,
      clientId: "ingest-acks",
      group: "acks",
      maxHeld: 20,
      batchSize: 10,
      batchMs: 10,
      keepaliveSec: 2,
    });
    const board = fleet.boards[0]!;
    const start = board.seq;
    for (let i = 0; i < 50; i++) await board.publishNext();
    // Held acks do not stall the connection: 20 arrive (the first batch of 10 waits on the store,
    // the next 10 queue behind it) and the broker stops there, at the Receive Maximum.
    await waitUntil(() => first.held === 20, 10_000, "20 held messages");
    const connections = first.connections;
    // A full window must not stop MQTT.js from reading PINGRESPs: past 1.5 × keepalive the link
    // is still the same one and nothing was re-delivered.
    await new Promise((r) => setTimeout(r, 4500));
    expect(first.connections).toBe(connections);
    expect(first.held).toBe(20);
    expect(first.account.totals().received).toBe(20);
    expect(gated.lines).toHaveLength(0);

    // Crash: the connection drops without one PUBACK sent and without a store write.
    gated.fail = true;
    await first.stop(500);

    const store = new RecordingStore();
    const second = await startIngest(s, {
      encrypted: false,
      store,
      clientId: "ingest-acks",
      group: "acks",
      maxHeld: 20,
      batchSize: 10,
      batchMs: 10,
    });
    await waitUntil(() => store.lines.length >= 50, 20_000, "all 50 messages re-delivered and written");
    expect(seqsOf(store.lines)).toEqual(Array.from({ length: 50 }, (_, i) => start + i));
    await waitUntil(() => second.held === 0, 5000, "all acknowledged");
    await second.stop();

    // Everything was acknowledged this time: a third session gets nothing again.
    const third = new RecordingStore();
    const again = await startIngest(s, {
      encrypted: false,
      store: third,
      clientId: "ingest-acks",
      group: "acks",
      batchMs: 10,
    });
    await board.publishNext();
    await waitUntil(() => third.lines.length >= 1, 10_000, "the fresh message");
    await new Promise((r) => setTimeout(r, 500));
    expect(seqsOf(third.lines)).toEqual([start + 50]);
    await again.stop();
  });

  it("acknowledges after a slow store finally accepts, in one pass, without re-delivery", async () => {
    const gated = new GatedStore();
    const ingest = await startIngest(s, {
      encrypted: false,
      store: gated,
      clientId: "ingest-slow",
      group: "slow",
      batchMs: 10,
    });
    const board = fleet.boards[1]!;
    const start = board.seq;
    for (let i = 0; i < 30; i++) await board.publishNext();
    await waitUntil(() => ingest.held === 30, 10_000, "30 held");
    gated.release();
    await waitUntil(() => ingest.held === 0, 10_000, "acks sent");
    await ingest.stop();
    expect(seqsOf(gated.lines)).toEqual(Array.from({ length: 30 }, (_, i) => start + i));
    const next = new RecordingStore();
    const later = await startIngest(s, {
      encrypted: false,
      store: next,
      clientId: "ingest-slow",
      group: "slow",
      batchMs: 10,
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect(next.lines).toEqual([]);
    expect(later.account.totals().received).toBe(0);
    await later.stop();
  });

  it("a line the store refuses outright is dead-lettered and the rest of its batch is written", async () => {
    const written: string[] = [];
    const picky: BatchStore = {
      async write(lines) {
        if (lines.some((l) => /seq=\d*7i/.test(l))) throw new StoreRejectedError(400, "bad line");
        written.push(...lines);
      },
    };
    const ingest = await startIngest(s, {
      encrypted: false,
      store: picky,
      clientId: "ingest-picky",
      group: "picky",
      batchMs: 50,
    });
    const board = fleet.boards[1]!;
    const start = board.seq;
    for (let i = 0; i < 10; i++) await board.publishNext();
    await waitUntil(
      () => ingest.account.totals().written + ingest.account.totals().rejected >= 10,
      10_000,
      "10 handled",
    );
    await ingest.stop();
    const refusedSeq = Array.from({ length: 10 }, (_, i) => start + i).filter((n) => n % 10 === 7);
    expect(seqsOf(written)).toEqual(
      Array.from({ length: 10 }, (_, i) => start + i).filter((n) => !refusedSeq.includes(n)),
    );
    const dead = await readDeadLetters(s.deadLetterPath);
    expect(dead.filter((d) => d.reason === "store_rejected")).toHaveLength(refusedSeq.length);
  });

  it("isolates one refused line of a 120-line batch in O(log n) requests, and leaves it out of the replay window", async () => {
    const board = fleet.boards[0]!;
    const msgs = Array.from({ length: 120 }, () => board.nextMessage());
    const refusedMsg = msgs[78]!;
    const bad = refusedMsg.reading.seq;
    const requests: string[][] = [];
    let gate: (() => void) | undefined;
    const gated = new Promise<void>((r) => (gate = r));
    const picky: BatchStore = {
      async write(lines) {
        requests.push([...lines]);
        if (requests.length === 1) await gated; // the first message's batch waits, so the other 119 form one batch
        if (lines.some((l) => l.includes(`seq=${bad}i`))) throw new StoreRejectedError(400, "bad line");
      },
    };
    const ingest = await startIngest(s, {
      encrypted: false,
      store: picky,
      clientId: "ingest-bisect",
      group: "bisect",
      batchMs: 20,
      batchSize: 200,
      maxHeld: 400,
    });
    await board.publishRaw(msgs[0]!.topic, msgs[0]!.payload);
    await waitUntil(() => requests.length === 1, 10_000, "first batch at the store");
    for (const m of msgs.slice(1)) await board.publishRaw(m.topic, m.payload);
    await waitUntil(() => ingest.held === 120, 10_000, "120 held");
    gate!();
    await waitUntil(() => ingest.held === 0, 10_000, "all acknowledged");
    expect(requests[1]).toHaveLength(119);
    // 1 for the batch + 2 per halving level (ceil(log2 119) = 7); line by line would be 1 + 119.
    expect(requests.length - 1).toBeLessThanOrEqual(1 + 2 * 7);
    expect(ingest.account.totals()).toMatchObject({ written: 119, rejected: 1, duplicates: 0 });
    // The refused reading was never stored, so its window slot stays open: a re-send is a new write, not a duplicate.
    await board.publishRaw(refusedMsg.topic, refusedMsg.payload);
    await waitUntil(() => ingest.account.totals().received === 121, 10_000, "re-send received");
    await waitUntil(() => ingest.held === 0, 10_000, "re-send handled");
    expect(ingest.account.totals()).toMatchObject({ duplicates: 0, rejected: 2 });
    await ingest.stop();
  });
});
