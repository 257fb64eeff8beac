import { describe, expect, it } from "vitest";
import { ensureFdLimit, readFdLimits } from "../../src/emulator/fd-limit";

describe("open-file limit", () => {
  it("reads this process's limits", () => {
    const l = readFdLimits();
    expect(l).toBeDefined();
    expect(l!.soft).toBeGreaterThan(0);
    expect(l!.hard).toBeGreaterThanOrEqual(l!.soft);
  });

  it("accepts what the limit allows and refuses more with a message that says how to fix it", () => {
    const l = readFdLimits()!;
    expect(ensureFdLimit(Math.min(64, l.soft))!.soft).toBeGreaterThanOrEqual(64);
    const beyond = Number.isFinite(l.hard) ? l.hard + 1 : 2 ** 40;
    expect(() => ensureFdLimit(beyond)).toThrow(/open-file limit is \d+ .*ulimit -n/);
  });
});
