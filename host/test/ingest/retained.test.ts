/**
 * Retained telemetry, through the real Mosquitto: a board that publishes a reading with RETAIN would have
 * it re-delivered at every ingest subscribe (and to every new subscriber). Mosquitto 2.0.11 cannot refuse
 * RETAIN per topic (`retain_available` is global, and the boards' last will is retained), so the ingest
 * refuses it, every time, under its own reason.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestFleet } from "../../testkit/ingest/fleet-publisher";
import type { BatchStore } from "../../src/ingest/store-writer";
import {
  connectFleet,
  readDeadLetters,
  startIngest,
  startTestStack,
  waitUntil,
  type TestStack,
} from "./helpers/stack";

class RecordingStore implements BatchStore {
  lines: string[] = [];
  async write(lines: readonly string[]): Promise<void> {
    this.lines.push(...lines);
  }
}

let s: TestStack;
let fleet: TestFleet;

beforeAll(async () => {
  s = await startTestStack({ devices: 1, bindClientIdToIdentity: false });
  fleet = await connectFleet(s, { encrypted: false });
});

afterAll(async () => {
  await fleet?.end();
  await s?.cleanup();
});

describe("retained telemetry", () => {
  it("is refused as retained, live and again at the next subscribe, and never stored", async () => {
    const board = fleet.boards[0]!;
    const store = new RecordingStore();
    const ingest = await startIngest(s, { encrypted: false, store, clientId: "ingest-retain", group: "" });
    const retained = board.nextMessage();
    await board.publishRaw(retained.topic, retained.payload, 1, true);
    const normal = await board.publishNext();
    await waitUntil(
      () => ingest.account.totals().received === 2 && ingest.held === 0,
      10_000,
      "both handled",
    );
    expect(ingest.account.rejectedByReason()).toEqual({ retained: 1 });
    expect(store.lines.filter((l) => l.startsWith("electrolyser,"))).toEqual([
      expect.stringContaining(`seq=${normal.seq}i`),
    ]);
    await ingest.stop();

    // A fresh subscription (a new ingest session): the broker hands over the retained reading at once.
    const later = await startIngest(s, { encrypted: false, store, clientId: "ingest-retain-2", group: "" });
    await waitUntil(
      () => later.account.totals().received === 1 && later.held === 0,
      10_000,
      "retained re-delivered",
    );
    expect(later.account.rejectedByReason()).toEqual({ retained: 1 });
    expect(store.lines.filter((l) => l.includes(`seq=${retained.reading.seq}i`))).toEqual([]);
    await later.stop();

    const dead = await readDeadLetters(s.deadLetterPath);
    expect(dead.filter((d) => d.reason === "retained").map((d) => d.topic)).toEqual([
      retained.topic,
      retained.topic,
    ]);
    // What the operator can do: the board (or anyone with write rights to the topic) clears it with an empty retained message.
    await board.publishRaw(retained.topic, new Uint8Array(0), 1, true);
  });
});
