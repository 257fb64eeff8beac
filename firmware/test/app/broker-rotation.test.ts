import { describe, expect, it } from "vitest";
import BrokerRotation from "../../src/app/broker-rotation";
import { formatBrokerList, parseBrokerList, type BrokerAddress } from "../../src/identity/broker-list";

const A: BrokerAddress = { host: "n1.plant", port: 8883 };
const B: BrokerAddress = { host: "n2.plant", port: 8884 };
const C: BrokerAddress = { host: "n3.plant", port: 8885 };

function rotation(
  brokers: BrokerAddress[],
  homeRetryMs = 60_000,
): { r: BrokerRotation; at: (t: number) => void } {
  let now = 0;
  const r = new BrokerRotation(brokers, { now: () => now, homeRetryMs });
  return { r, at: (t) => (now = t) };
}

describe("broker rotation (the failover rule board and emulator share)", () => {
  it("starts at home and moves to the next broker on every failure, round robin", () => {
    const { r } = rotation([A, B, C]);
    expect(r.current).toEqual(A);
    expect(r.failed()).toEqual(B);
    expect(r.failed()).toEqual(C);
    // Home failed a moment ago: not yet eligible, so the round goes on through it only in turn.
    expect(r.failed()).toEqual(A);
    expect(r.moves).toBe(3);
  });

  it("a board away from home goes home at its next reconnect once home has been quiet for homeRetryMs", () => {
    const { r, at } = rotation([A, B, C], 60_000);
    at(1_000);
    r.failed(); // home died: now on B
    at(30_000);
    // B's connection ends before home has been quiet long enough: on to C, not back home.
    expect(r.failed()).toEqual(C);
    at(61_000);
    expect(r.failed()).toEqual(A);
  });

  it("never drops back home between failures of other brokers when home keeps failing", () => {
    const { r, at } = rotation([A, B, C], 60_000);
    const seen: string[] = [];
    for (let t = 0; t < 10; t++) {
      at(t * 1000);
      seen.push(r.failed().host);
    }
    expect(seen).toEqual([
      "n2.plant",
      "n3.plant",
      "n1.plant",
      "n2.plant",
      "n3.plant",
      "n1.plant",
      "n2.plant",
      "n3.plant",
      "n1.plant",
      "n2.plant",
    ]);
  });

  it("a single broker is a list of one: failures stay on it", () => {
    const { r } = rotation([A]);
    expect(r.failed()).toEqual(A);
    expect(r.moves).toBe(0);
  });

  it("refuses an empty list", () => {
    expect(() => new BrokerRotation([], { now: () => 0 })).toThrow(/at least one/);
  });
});

describe("broker list (NVS key `brokers`, emulator list)", () => {
  it("parses host:port lists, IPv6 in brackets, and formats them back", () => {
    const r = parseBrokerList("n2.plant:8884, [fd00::3]:8885");
    expect(r).toEqual({
      ok: true,
      brokers: [
        { host: "n2.plant", port: 8884 },
        { host: "[fd00::3]", port: 8885 },
      ],
    });
    if (r.ok) expect(formatBrokerList(r.brokers)).toBe("n2.plant:8884,[fd00::3]:8885");
    expect(parseBrokerList("")).toEqual({ ok: true, brokers: [] });
  });

  it.each([
    ["n2.plant", /not host:port/],
    ["n2.plant:0", /not host:port/],
    ["n2.plant:65536", /not host:port/],
    ["mqtts://n2.plant:8883", /not host:port/],
    ["a:1,,b:2", /not host:port/],
    ["a:1,a:1", /listed twice/],
    [Array.from({ length: 17 }, (_, i) => `h${i}:1`).join(","), /more than 16/],
  ])("refuses %s", (text, problem) => {
    const r = parseBrokerList(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(problem);
  });
});
