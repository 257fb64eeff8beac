// The fleet-admin rights in the two brokers other than Mosquitto: the embedded broker's policy and the NATS
// permissions generated per identity (acl.template's `user fleet-admin` section, tested for real in
// fleet-admin-access.test.ts).
import { describe, expect, it } from "vitest";
import { isAllowed } from "../../src/broker/topic-policy";
import { permissionsFor } from "../../src/broker/nats/permissions";

describe("fleet-admin", () => {
  it("the embedded broker lets it write boards' trust and config and nothing else; boards read their own", () => {
    const can = (who: string, action: "publish" | "subscribe", topic: string) =>
      isAllowed(who, action, topic);
    expect(can("fleet-admin", "publish", "electrolyser/dev-a/down/trust")).toBe(true);
    expect(can("fleet-admin", "publish", "electrolyser/dev-a/down/config")).toBe(true);
    for (const topic of [
      "electrolyser/dev-a/down/stored",
      "electrolyser/+/down/trust",
      "electrolyser/fleet-admin/down/trust",
      "electrolyser/dev-a/telemetry",
      "electrolyser/fleet-admin/telemetry",
    ])
      expect({ topic, ok: can("fleet-admin", "publish", topic) }).toEqual({ topic, ok: false });
    for (const filter of [
      "electrolyser/+/down/#",
      "electrolyser/dev-a/down/trust",
      "electrolyser/+/telemetry",
    ])
      expect({ filter, ok: can("fleet-admin", "subscribe", filter) }).toEqual({ filter, ok: false });
    // It reads the boards' status (trust finish --wait) and their key-request answers, nothing else.
    expect(can("fleet-admin", "subscribe", "electrolyser/+/status")).toBe(true);
    expect(can("fleet-admin", "subscribe", "electrolyser/dev-a/status")).toBe(true);
    expect(can("fleet-admin", "subscribe", "electrolyser/dev-a/csr")).toBe(true);
    // It clears a board's retained answer when the rotation ends; the board writes its own answer only.
    expect(can("fleet-admin", "publish", "electrolyser/dev-a/csr")).toBe(true);
    expect(can("dev-a", "publish", "electrolyser/dev-a/csr")).toBe(true);
    for (const [who, topic] of [
      ["dev-b", "electrolyser/dev-a/csr"],
      ["ingest", "electrolyser/dev-a/csr"],
      ["monitor", "electrolyser/dev-a/csr"],
      ["fleet-admin", "electrolyser/+/csr"],
    ] as const)
      expect({ who, topic, ok: can(who, "publish", topic) }).toEqual({ who, topic, ok: false });
    for (const who of ["dev-b", "ingest", "monitor", "telegraf"])
      expect({ who, ok: can(who, "subscribe", "electrolyser/dev-a/csr") }).toEqual({ who, ok: false });
    for (const who of ["dev-a", "dev-b", "ingest", "monitor", "telegraf"])
      expect({ who, ok: can(who, "publish", "electrolyser/dev-a/down/trust") }).toEqual({ who, ok: false });
    expect(can("dev-a", "subscribe", "electrolyser/dev-a/down/trust")).toBe(true);
    expect(can("dev-b", "subscribe", "electrolyser/dev-a/down/trust")).toBe(false);
  });

  it("NATS: publish to every board's down.trust, down.config and csr (to clear it), subscribe to status and csr", () => {
    const p = permissionsFor("fleet-admin", "service");
    expect(p.publish).toEqual({
      allow: ["electrolyser.*.down.trust", "electrolyser.*.down.config", "electrolyser.*.csr"],
      deny: ["electrolyser.fleet-admin.>"],
    });
    expect(p.subscribe.allow.filter((s) => s.startsWith("electrolyser."))).toEqual([
      "electrolyser.*.status",
      "electrolyser.*.csr",
    ]);
    expect(permissionsFor("dev-a", "device").publish.allow).toContain("electrolyser.dev-a.csr");
    expect(permissionsFor("ingest", "service").subscribe.allow).not.toContain("electrolyser.*.csr");
    // A device that somehow holds the name gets a board's rights only, never the operator's.
    expect(permissionsFor("fleet-admin", "device").publish.allow).not.toContain("electrolyser.*.down.trust");
    expect(permissionsFor("ingest", "service").publish.allow).not.toContain("electrolyser.*.down.trust");
  });
});
