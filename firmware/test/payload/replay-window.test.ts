import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ReplayWindow } from "../../src/payload/replay-window";

describe("replay window", () => {
  it("accepts new, flags repeats inside the window as duplicates and older ones as replays", () => {
    const w = new ReplayWindow({ size: 32 });
    const see = (boot: number, seq: number): string => {
      const v = w.check("d", boot, seq);
      if (v === "new") w.commit("d", boot, seq);
      return v;
    };
    expect(see(1, 0)).toBe("new");
    expect(see(1, 0)).toBe("duplicate");
    expect(see(1, 5)).toBe("new");
    expect(see(1, 3)).toBe("new"); // late but inside the window
    expect(see(1, 3)).toBe("duplicate");
    expect(see(1, 40)).toBe("new");
    expect(see(1, 8)).toBe("replay"); // 40 - 32 = 8 is outside
    expect(see(1, 9)).toBe("new");
    expect(see(2, 0)).toBe("new"); // reboot
    expect(see(1, 41)).toBe("new"); // the previous boot, replayed from the board's flash after the reboot
    expect(see(1, 41)).toBe("duplicate");
    expect(see(1, 40)).toBe("duplicate");
    expect(see(1, 9)).toBe("replay"); // 41 - 32: outside the previous boot's window
    expect(see(2, 1)).toBe("new");
    expect(see(3, 0)).toBe("new");
    expect(see(2, 2)).toBe("new");
    expect(see(2, 1)).toBe("duplicate");
    expect(see(1, 42)).toBe("replay"); // two boots back
    expect(w.check("other", 1, 0)).toBe("new");
  });

  it("accepts the previous boot's readings when the new boot's came first (a rebooted board's flash replay)", () => {
    const w = new ReplayWindow({ size: 32 });
    const see = (boot: number, seq: number): string => {
      const v = w.check("d", boot, seq);
      if (v === "new") w.commit("d", boot, seq);
      return v;
    };
    expect(see(5, 0)).toBe("new");
    expect(see(4, 10)).toBe("new");
    expect(see(4, 11)).toBe("new");
    expect(see(4, 10)).toBe("duplicate");
    expect(see(3, 0)).toBe("replay");
    expect(w.latest("d")).toEqual({ boot: 5, seq: 0 });
  });

  it("matches a reference model (a set of everything seen) inside the window", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 400 }), (seqs) => {
        const w = new ReplayWindow({ size: 64 });
        const seen = new Set<number>();
        let max = -1;
        for (const s of seqs) {
          const v = w.check("d", 1, s);
          const expected = seen.has(s)
            ? s <= max - 64
              ? "replay"
              : "duplicate"
            : s <= max - 64
              ? "replay"
              : "new";
          expect(v).toBe(expected);
          if (v === "new") {
            w.commit("d", 1, s);
            seen.add(s);
            max = Math.max(max, s);
          }
        }
      }),
    );
  });
});
