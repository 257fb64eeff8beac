import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Outbox } from "../../src/outbox/outbox";

describe("outbox", () => {
  it("numbers entries, keeps them until acked and limits what is in flight", () => {
    const box = new Outbox<string>({ capacity: 10 });
    for (let i = 0; i < 5; i++) box.enqueue((seq) => `m${seq}`);
    const first = box.takeSendable(2);
    expect(first.map((e) => e.seq)).toEqual([0, 1]);
    expect(box.takeSendable(2)).toEqual([]);
    expect(box.ack(1)).toBe(true);
    expect(box.takeSendable(2).map((e) => e.item)).toEqual(["m2"]);
    expect(box.ack(1)).toBe(false);
    expect(box.size).toBe(4);
    expect(box.inflight).toBe(2);
  });

  it("resends everything unacked, in order, after the connection is lost", () => {
    const box = new Outbox<number>({ capacity: 10 });
    for (let i = 0; i < 4; i++) box.enqueue((seq) => seq);
    box.takeSendable(10);
    box.ack(2);
    box.connectionLost();
    const again = box.takeSendable(10);
    expect(again.map((e) => e.seq)).toEqual([0, 1, 3]);
    expect(again.every((e) => e.attempts === 2)).toBe(true);
  });

  it("drops the oldest when full and counts it", () => {
    const box = new Outbox<number>({ capacity: 3 });
    for (let i = 0; i < 5; i++) box.enqueue((seq) => seq);
    expect(box.dropped).toBe(2);
    expect(box.pending().map((e) => e.seq)).toEqual([2, 3, 4]);
  });

  it("delivers every entry exactly once per ack under any interleaving of sends, acks and disconnects", () => {
    type Op = { t: "add" } | { t: "send"; n: number } | { t: "ack"; pick: number } | { t: "drop" };
    const op = fc.oneof(
      fc.constant<Op>({ t: "add" }),
      fc.integer({ min: 1, max: 5 }).map<Op>((n) => ({ t: "send", n })),
      fc.nat().map<Op>((pick) => ({ t: "ack", pick })),
      fc.constant<Op>({ t: "drop" }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const box = new Outbox<number>({ capacity: 1000 });
        const inflight: number[] = [];
        const acked: number[] = [];
        let added = 0;
        for (const o of ops) {
          if (o.t === "add") box.enqueue(() => added++);
          else if (o.t === "send") inflight.push(...box.takeSendable(o.n).map((e) => e.seq));
          else if (o.t === "ack" && inflight.length) {
            const [seq] = inflight.splice(o.pick % inflight.length, 1);
            if (box.ack(seq!)) acked.push(seq!);
          } else if (o.t === "drop") {
            box.connectionLost();
            inflight.length = 0;
          }
        }
        box.connectionLost();
        for (const e of box.takeSendable(Infinity)) acked.push(e.seq);
        expect(acked.sort((a, b) => a - b)).toEqual(Array.from({ length: added }, (_, i) => i));
      }),
    );
  });
});
