import { describe, expect, it } from "vitest";
import { liveBenchFields } from "../../src/emulator/bench-metrics";
import type { FaultLogEntry, FleetControl } from "../../src/emulator/fleet";
import { LiveSampler } from "../../src/emulator/live-snapshot";
import { renderLines } from "../../src/emulator/live-view";
import { FleetStats } from "../../src/emulator/stats";

/** The parts of a fleet the sampler reads; anything else it touches fails the test. */
function fakeFleet(stats: FleetStats, faultLog: FaultLogEntry[]): FleetControl {
  const unused = (): never => {
    throw new Error("the live sampler should not call this");
  };
  return {
    stats,
    faultLog,
    allConnectedAtS: undefined,
    failure: undefined,
    elapsedS: () => 12,
    pendingMessages: () => 7,
    init: unused,
    start: unused,
    clockUntrusted: unused,
    markSteady: unused,
    stopSampling: unused,
    drain: unused,
    shutdown: unused,
    deviceCounts: unused,
  };
}

describe("the live snapshot", () => {
  it("is taken once a second, empties the PUBACK window, and is what both the view and the store show", () => {
    const stats = new FleetStats();
    const faults: FaultLogEntry[] = [];
    const sampler = new LiveSampler(fakeFleet(stats, faults), undefined, 10, 0);
    stats.acked = 500;
    stats.connected = 9;
    stats.handshakeFailures = 2;
    stats.connectFailures = 1;
    stats.pubackWindow.recordMs(40);
    expect(sampler.sample(999)).toBeUndefined();
    expect(stats.pubackWindow.count).toBe(1);

    const s = sampler.sample(1000)!;
    expect(s).toMatchObject({ elapsedS: 12, target: 10, connected: 9, msgPerS: 500, queued: 7 });
    expect(s.pubackP50Ms).toBeGreaterThan(35);
    expect(stats.pubackWindow.count).toBe(0);
    expect(renderLines(s)[0]).toContain("(3 connect failures)");
    expect(liveBenchFields(s, 2 ** 20)).toMatchObject({
      boards_connected: 9,
      handshake_failures: 2,
      connect_failures: 1,
      msg_per_s: 500,
      puback_p50_ms: s.pubackP50Ms,
      rss_mb: 1,
    });

    // The rate is per interval: 250 more acknowledged in the next two seconds is 125/s.
    stats.acked = 750;
    expect(sampler.sample(3000)!.msgPerS).toBe(125);
  });

  it("names the last three faults that started", () => {
    const stats = new FleetStats();
    const faults: FaultLogEntry[] = [];
    const sampler = new LiveSampler(fakeFleet(stats, faults), undefined, 1, 0);
    const entry = (type: FaultLogEntry["type"], device: string, event: "start" | "end"): FaultLogEntry => ({
      at: 1,
      wallTime: "2026-01-01T00:00:01Z",
      elapsedS: 1,
      device,
      type,
      event,
      faultId: 1,
    });
    faults.push(entry("network_drop", "a", "start"), entry("network_drop", "a", "end"));
    faults.push(entry("clock_skew", "b", "start"), entry("trip", "c", "start"));
    faults.push(entry("network_drop", "d", "start"));
    expect(sampler.sample(1000)!.lastFaults).toEqual(["clock_skew@b", "trip@c", "network_drop@d"]);
  });
});
