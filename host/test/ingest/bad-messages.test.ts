/**
 * 1000 bad messages through the real broker into the real ingest: none reaches the store, each is
 * counted under its reason and dead-lettered, and good messages keep flowing before and after.
 */
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { encodeReading } from "../../../firmware/src/payload/codec";
import { sealEnvelope } from "../../../firmware/src/envelope/envelope";
import { telemetryTopic } from "../../../firmware/src/telemetry/topics";
import { deriveDeviceKey } from "../../src/crypto/device-keys";
import { nodeAead } from "../../src/crypto/node-aead";
import { sampleReading, type FleetBoard, type TestFleet } from "../../testkit/ingest/fleet-publisher";
import { exportSeries } from "../../src/store/victoria-metrics";
import type { IngestService } from "../../src/ingest/service";
import {
  connectFleet,
  diffStored,
  KEY_ID,
  readDeadLetters,
  startIngest,
  startTestStack,
  waitForStoredCount,
  waitUntil,
  type TestStack,
  stopStack,
} from "./helpers/stack";

const BOARDS = 10;
const BAD_TOTAL = 1000;
/** Bad messages use sequence numbers far from the good ones, so a stored one would stand out. */
const BAD_SEQ_BASE = 1_000_000;

let stack: TestStack | undefined;
let fleet: TestFleet | undefined;
let ingest: IngestService | undefined;

afterEach(async () => {
  await stopStack({ ingest, fleet, stack });
  ingest = fleet = stack = undefined;
});

interface BadMessage {
  board: FleetBoard;
  topic: string;
  payload: Uint8Array;
  reason: string;
}

type Maker = (board: FleetBoard, other: FleetBoard, n: number) => BadMessage;

const bytes = (s: string) => new TextEncoder().encode(s);

function encryptedMakers(master: Uint8Array, captured: Map<string, Uint8Array[]>): Record<string, Maker> {
  const otherMaster = new Uint8Array(randomBytes(32));
  const seal = (board: FleetBoard, plaintext: Uint8Array, seq: number, m = master) =>
    sealEnvelope(nodeAead, deriveDeviceKey(m, board.id), {
      keyId: KEY_ID,
      boot: board.boot,
      counter: seq,
      topic: telemetryTopic(board.id),
      sensorId: board.id,
      plaintext,
    });
  const reading = (board: FleetBoard, seq: number) =>
    sampleReading(board.id, seq, board.nextTs(), board.boot);
  return {
    tampered: (board, _o, n) => {
      const env = seal(board, encodeReading(reading(board, BAD_SEQ_BASE + n)), BAD_SEQ_BASE + n);
      env[14 + (n % 50)] = env[14 + (n % 50)]! ^ 0x40;
      return { board, topic: telemetryTopic(board.id), payload: env, reason: "tag_mismatch" };
    },
    wrong_key: (board, _o, n) => ({
      board,
      topic: telemetryTopic(board.id),
      payload: seal(board, encodeReading(reading(board, BAD_SEQ_BASE + n)), BAD_SEQ_BASE + n, otherMaster),
      reason: "tag_mismatch",
    }),
    // Board `other` got hold of this board's sealed message and publishes it on its own topic.
    wrong_topic: (board, other, n) => ({
      board: other,
      topic: telemetryTopic(other.id),
      payload: seal(board, encodeReading(reading(board, BAD_SEQ_BASE + n)), BAD_SEQ_BASE + n),
      reason: "tag_mismatch",
    }),
    // Genuine messages of an earlier boot, captured and sent again after the board rebooted twice (the
    // window keeps the previous boot, whose readings a board's flash ring may still send: those would be
    // quiet duplicates; a boot before that is a replay).
    replayed: (board, _o, n) => {
      const old = captured.get(board.id)!;
      return { board, topic: telemetryTopic(board.id), payload: old[n % old.length]!, reason: "replay" };
    },
    malformed_json: (board, _o, n) => ({
      board,
      topic: telemetryTopic(board.id),
      payload: seal(board, bytes(`{"v":1,"sensor_id":"${board.id}","seq":${n},`), BAD_SEQ_BASE + n),
      reason: "invalid_json",
    }),
    oversized: (board, _o, n) => {
      // Bigger than any envelope may be, smaller than the broker's packet limit.
      const env = new Uint8Array(2000);
      env.set(seal(board, encodeReading(reading(board, BAD_SEQ_BASE + n)), BAD_SEQ_BASE + n));
      return { board, topic: telemetryTopic(board.id), payload: env, reason: "oversized" };
    },
    out_of_range: (board, _o, n) => {
      const r = reading(board, BAD_SEQ_BASE + n);
      r.values.pressure_bar = 5000;
      return {
        board,
        topic: telemetryTopic(board.id),
        payload: seal(board, encodeReading(r), BAD_SEQ_BASE + n),
        reason: "out_of_range",
      };
    },
  };
}

function plainMakers(captured: Map<string, Uint8Array[]>): Record<string, Maker> {
  const reading = (board: FleetBoard, seq: number) =>
    sampleReading(board.id, seq, board.nextTs(), board.boot);
  return {
    wrong_topic: (board, other, n) => ({
      board: other,
      topic: telemetryTopic(other.id),
      payload: encodeReading(reading(board, BAD_SEQ_BASE + n)),
      reason: "device_mismatch",
    }),
    replayed: (board, _o, n) => {
      const old = captured.get(board.id)!;
      return { board, topic: telemetryTopic(board.id), payload: old[n % old.length]!, reason: "replay" };
    },
    malformed_json: (board, _o, n) => ({
      board,
      topic: telemetryTopic(board.id),
      payload: bytes(`{"v":1,"seq":${n},]`),
      reason: "invalid_json",
    }),
    oversized: (board, _o, n) => {
      const r = reading(board, BAD_SEQ_BASE + n);
      const text = JSON.stringify({
        ...JSON.parse(new TextDecoder().decode(encodeReading(r))),
        padding: "x".repeat(1500),
      });
      return { board, topic: telemetryTopic(board.id), payload: bytes(text), reason: "oversized" };
    },
    out_of_range: (board, _o, n) => {
      const r = reading(board, BAD_SEQ_BASE + n);
      r.values.temperature_c = 400;
      return { board, topic: telemetryTopic(board.id), payload: encodeReading(r), reason: "out_of_range" };
    },
    not_finite: (board, _o, n) => {
      const text = new TextDecoder()
        .decode(encodeReading(reading(board, BAD_SEQ_BASE + n)))
        .replace(/"voltage_v":[0-9.]+/, '"voltage_v":1e999');
      return { board, topic: telemetryTopic(board.id), payload: bytes(text), reason: "not_finite" };
    },
  };
}

describe.each([{ encrypted: true }, { encrypted: false }])(
  "1000 bad messages, encrypted=$encrypted",
  ({ encrypted }) => {
    it("stores none, counts and dead-letters each under its reason, and keeps running", async () => {
      // Without store-side dedup: a message the ingest wrote twice would be stored twice.
      stack = await startTestStack({ devices: BOARDS, dedup: false });
      ingest = await startIngest(stack, { encrypted, metrics: { port: 0 } });
      const boot1 = await connectFleet(stack, { encrypted });
      const mode = (b: FleetBoard) => b.mode;

      // Boot 1: good messages, whose bytes an attacker captures.
      const captured = new Map<string, Uint8Array[]>();
      const published = new Map<string, number[]>();
      for (const b of boot1.boards) {
        captured.set(b.id, []);
        published.set(b.id, []);
        for (let i = 0; i < 5; i++) {
          const m = b.nextMessage();
          await b.publishRaw(m.topic, m.payload);
          captured.get(b.id)!.push(m.payload);
          published.get(b.id)!.push(m.reading.seq);
        }
      }
      // The boards reboot (boot 2) and publish one reading each, then reboot again (boot 3) and publish good
      // messages again: boot 1 is now older than the previous boot.
      await boot1.end();
      const between = await connectFleet(stack, { encrypted, boot: 2 });
      for (const b of between.boards) {
        const m = b.nextMessage();
        await b.publishRaw(m.topic, m.payload);
      }
      await waitUntil(
        () => ingest!.account.totals().written >= BOARDS * 6,
        30_000,
        "boot 2's readings stored",
      );
      await between.end();
      fleet = await connectFleet(stack, { encrypted, boot: 3 });
      // Boot 3 stores sequence numbers from 0 again; its readings are told apart by timestamp.
      const boot2 = new Map<string, Uint8Array[]>();
      const publishGood = async (n: number) => {
        for (const b of fleet!.boards) {
          for (let i = 0; i < n; i++) {
            const m = b.nextMessage();
            expect(m.reading.boot).toBe(3);
            await b.publishRaw(m.topic, m.payload);
            boot2.set(b.id, [...(boot2.get(b.id) ?? []), m.payload]);
          }
        }
      };
      await publishGood(3);
      // At-least-once re-sends: the same bytes again are duplicates, dropped quietly, not refused.
      for (const b of fleet.boards)
        for (const payload of boot2.get(b.id)!.slice(0, 2))
          await b.publishRaw(`electrolyser/${b.id}/telemetry`, payload);
      expect(mode(fleet.boards[0]!).kind).toBe(encrypted ? "encrypted" : "plain");
      // The replay window learns of boot 3 only once its readings are stored: until then a boot-1
      // message sent again is a harmless duplicate of a stored reading, not yet a replay.
      await waitUntil(
        () => ingest!.account.totals().written >= BOARDS * 9,
        30_000,
        "boot 3's first readings stored",
      );

      const makers = encrypted ? encryptedMakers(stack.master, captured) : plainMakers(captured);
      const kinds = Object.keys(makers);
      const bad: BadMessage[] = [];
      for (let n = 0; n < BAD_TOTAL; n++) {
        const kind = kinds[n % kinds.length]!;
        const board = fleet.boards[n % BOARDS]!;
        const other = fleet.boards[(n + 1) % BOARDS]!;
        bad.push(makers[kind]!(board, other, n));
      }
      const expected: Record<string, number> = {};
      for (const m of bad) expected[m.reason] = (expected[m.reason] ?? 0) + 1;
      await Promise.all(
        fleet.boards.map(async (b) => {
          for (const m of bad.filter((x) => x.board === b)) await b.publishRaw(m.topic, m.payload);
        }),
      );
      await waitUntil(() => ingest!.account.totals().rejected >= BAD_TOTAL, 30_000, "1000 rejections");

      // Still running: good messages after the flood are stored.
      await publishGood(2);
      await waitUntil(
        () => ingest!.account.totals().written >= BOARDS * 11,
        30_000,
        "good messages after the bad ones",
      );

      expect(ingest.account.rejectedByReason()).toEqual(expected);
      expect(ingest.account.totals()).toMatchObject({
        rejected: BAD_TOTAL,
        written: BOARDS * 11,
        duplicates: BOARDS * 2,
      });
      const dead = await readDeadLetters(stack.deadLetterPath);
      expect(dead).toHaveLength(BAD_TOTAL);
      const deadByReason: Record<string, number> = {};
      for (const d of dead) deadByReason[d.reason] = (deadByReason[d.reason] ?? 0) + 1;
      expect(deadByReason).toEqual(expected);
      expect(Buffer.from(dead[0]!.payload_b64, "base64").length).toBeGreaterThan(0);

      // In the store: boot 1's 5, boot 2's 1 and boot 3's 5 readings per board, nothing with a bad seq.
      const stored = await waitForStoredCount(stack.vm.url, BOARDS * 11, 60_000);
      for (const b of fleet.boards) published.set(b.id, [...published.get(b.id)!, 0, 0, 1, 2, 3, 4]);
      expect(diffStored(published, stored)).toEqual({ missing: [], extra: [] });

      // The refusals reach the store as the account (measurement ingest_rejected), never as telemetry.
      await ingest.writeAccount();
      await waitUntil(
        async () =>
          (await exportSeries(stack!.vm.url, "ingest_rejected_count")).length ===
          Object.keys(expected).length,
        30_000,
        "ingest_rejected in the store",
      );
      for (const series of await exportSeries(stack.vm.url, "ingest_rejected_count"))
        expect(series.values.at(-1)).toBe(expected[series.metric.reason!]);

      const metrics = await (await fetch(`http://127.0.0.1:${ingest.metricsPort}/metrics`)).text();
      for (const [reason, n] of Object.entries(expected))
        expect(metrics).toContain(`ingest_rejected_by_reason_total{reason="${reason}"} ${n}`);
    }, 240_000);
  },
);
