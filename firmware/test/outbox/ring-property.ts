// The flash ring's central property, shared by its own test and by the mutation test that checks this
// property can fail: for any sequence of appends, confirmations, clean reboots and power cuts at any byte
// of any write or erase, what the ring recovers is exactly the readings that were fully written (append
// returned) and not confirmed, in order, minus the oldest ones it counted as dropped. A cut may also take
// the oldest sector whose reclaim it interrupted (at most one sector of the oldest readings, which the
// ring was dropping to make room), but never a reading from the middle, never a torn one.
import fc from "fast-check";
import type { FlashRingOptions, StoredReading } from "../../src/outbox/flash-ring";
import NorFlashModel, { PowerCut } from "../models/nor-flash-model";

export interface RingUnderTest {
  append(boot: number, seq: number, payload: Uint8Array): void;
  confirm(boot: number, throughSeq: number): void;
  readings(): Iterable<StoredReading>;
  readonly dropped: number;
  readonly unconfirmed: number;
}
export type RingClass = new (options: FlashRingOptions) => RingUnderTest;

export const SECTOR = 256;
export const MAX_PAYLOAD = 64;
/** The most readings one sector of SECTOR bytes holds (empty payloads): the most a cut reclaim may take. */
const MOST_PER_SECTOR = Math.floor((SECTOR - 12) / 20);

type Op =
  | { t: "append"; payload: Uint8Array }
  | { t: "confirm"; pickBoot: number; pickSeq: number }
  | { t: "cut"; budget: number }
  | { t: "reboot" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  // Mostly small payloads: many records per sector, so a torn erase can leave whole records on both sides of a hole.
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 8 }).map((payload): Op => ({ t: "append", payload })) },
  {
    weight: 2,
    arbitrary: fc.uint8Array({ maxLength: MAX_PAYLOAD }).map((payload): Op => ({ t: "append", payload })),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({
        pickBoot: fc.double({ min: 0, max: 0.999, noNaN: true }),
        pickSeq: fc.double({ min: 0, max: 1, noNaN: true }),
      })
      .map((r): Op => ({ t: "confirm", ...r })),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 0, max: 3 * SECTOR }).map((budget): Op => ({ t: "cut", budget })),
  },
  { weight: 1, arbitrary: fc.constant<Op>({ t: "reboot" }) },
);

const key = (r: StoredReading) => `${r.boot}/${r.seq}/${Buffer.from(r.payload).toString("hex")}`;

function isSliceOf(got: string[], expected: string[], most: number): boolean {
  const j = expected.length - got.length;
  if (j < 0 || j > most) return false;
  return got.every((k, i) => k === expected[i + j]);
}

export function checkRingProperty(
  Ring: RingClass,
  o: { numRuns: number; seed?: number; shrink?: boolean },
): void {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 6 }),
      fc.integer({ min: 1, max: 0x7fffffff }),
      fc.array(opArb, { maxLength: 240, size: "max" }),
      (sectors, seed, ops) => {
        const flash = new NorFlashModel({ sectors, sectorSize: SECTOR, seed });
        const mount = () => new Ring({ flash, maxPayload: MAX_PAYLOAD });
        let ring = mount();
        let boot = 1;
        let seq = 0;
        let expected: StoredReading[] = [];
        const highest = new Map<number, number>();

        const recoverAfterCut = () => {
          flash.powerOn();
          ring = mount();
          const got = [...ring.readings()];
          const gotKeys = got.map(key);
          const want = expected.map(key);
          if (!isSliceOf(gotKeys, want, MOST_PER_SECTOR))
            throw new Error(
              `after a cut: recovered\n  ${gotKeys.join(" ")}\nexpected (or the newest part of)\n  ${want.join(" ")}`,
            );
          expected = got;
          boot++;
          seq = 0;
        };
        const cutOr = (e: unknown) => {
          if (!(e instanceof PowerCut)) throw e;
          recoverAfterCut();
        };

        for (const op of ops) {
          if (op.t === "append") {
            const before = ring.dropped;
            try {
              ring.append(boot, seq, op.payload);
            } catch (e) {
              cutOr(e);
              continue;
            }
            expected.splice(0, ring.dropped - before);
            expected.push({ boot, seq, payload: op.payload });
            highest.set(boot, seq);
            seq++;
          } else if (op.t === "confirm") {
            const boots = [...highest.keys()];
            if (boots.length === 0) continue;
            const b = boots[Math.floor(op.pickBoot * boots.length)]!;
            const s = Math.floor(op.pickSeq * (highest.get(b)! + 1));
            const before = ring.dropped;
            try {
              ring.confirm(b, s);
            } catch (e) {
              cutOr(e);
              continue;
            }
            expected = expected.filter((r) => !(r.boot === b && r.seq <= s));
            expected.splice(0, ring.dropped - before);
          } else if (op.t === "cut") {
            if (!flash.armed) flash.cutAfter(op.budget);
          } else {
            if (flash.armed) continue; // a reboot while a cut is pending would just move the cut
            ring = mount();
            const got = [...ring.readings()].map(key);
            const want = expected.map(key);
            if (got.join() !== want.join())
              throw new Error(`after a reboot: recovered\n  ${got.join(" ")}\nexpected\n  ${want.join(" ")}`);
            boot++;
            seq = 0;
          }
          if (ring.unconfirmed !== expected.length)
            throw new Error(`ring counts ${ring.unconfirmed} unconfirmed, expected ${expected.length}`);
        }
        flash.powerOn();
        const got = [...mount().readings()].map(key);
        const want = expected.map(key);
        if (got.join() !== want.join())
          throw new Error(`at the end: recovered\n  ${got.join(" ")}\nexpected\n  ${want.join(" ")}`);
      },
    ),
    {
      numRuns: o.numRuns,
      endOnFailure: o.shrink === false,
      ...(o.seed === undefined ? {} : { seed: o.seed }),
    },
  );
}
