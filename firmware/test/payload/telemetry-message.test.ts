import { describe, expect, it } from "vitest";
import { decodeTelemetryMessage, encodeTelemetryMessage } from "../../src/payload/telemetry-message";
import { ReplayWindow } from "../../src/payload/replay-window";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { DeviceKeyCache, deriveDeviceKey } from "../../../host/src/crypto/device-keys";
import { sampleReading } from "./sample-reading";

describe("telemetry message", () => {
  const ring = new Map([[2, new Uint8Array(32).fill(9)]]);
  const keys = new DeviceKeyCache(ring);
  const r = sampleReading();
  const enc = {
    kind: "encrypted" as const,
    aead: nodeAead,
    keyId: 2,
    key: deriveDeviceKey(ring.get(2)!, r.sensorId),
  };
  const dec = {
    kind: "encrypted" as const,
    aead: nodeAead,
    keyFor: (k: number, id: string) => keys.keyFor(k, id),
  };

  it("round-trips plain and encrypted", () => {
    const plain = encodeTelemetryMessage(r, { kind: "plain" });
    expect(plain.topic).toBe("electrolyser/elx-site1-0001/telemetry");
    expect(decodeTelemetryMessage(plain.topic, plain.payload, { kind: "plain" })).toEqual({
      ok: true,
      value: r,
    });
    const sealed = encodeTelemetryMessage(r, enc);
    expect(decodeTelemetryMessage(sealed.topic, sealed.payload, dec)).toEqual({ ok: true, value: r });
  });

  it("an encrypted fleet refuses a plain message (no downgrade)", () => {
    const plain = encodeTelemetryMessage(r, { kind: "plain" });
    const out = decodeTelemetryMessage(plain.topic, plain.payload, dec);
    expect(out.ok).toBe(false);
  });

  it("rejects a payload whose sensor_id differs from the topic", () => {
    const plain = encodeTelemetryMessage(r, { kind: "plain" });
    const out = decodeTelemetryMessage("electrolyser/elx-site1-0002/telemetry", plain.payload, {
      kind: "plain",
    });
    expect(!out.ok && out.error.code).toBe("device_mismatch");
    const sealed = encodeTelemetryMessage(r, enc);
    const moved = decodeTelemetryMessage("electrolyser/elx-site1-0002/telemetry", sealed.payload, dec);
    expect(!moved.ok && moved.error.code).toBe("tag_mismatch");
  });

  it("rejects a topic that is not a telemetry topic", () => {
    const plain = encodeTelemetryMessage(r, { kind: "plain" });
    for (const t of [
      "electrolyser/elx-site1-0001/status",
      "other/elx-site1-0001/telemetry",
      "electrolyser/+/telemetry",
    ]) {
      const out = decodeTelemetryMessage(t, plain.payload, { kind: "plain" });
      expect(out.ok).toBe(false);
    }
  });

  it("a replayed encrypted message is caught by the replay window", () => {
    const w = new ReplayWindow({ size: 64 });
    const first = sampleReading({ seq: 100 });
    const sealed = encodeTelemetryMessage(first, enc);
    const out = decodeTelemetryMessage(sealed.topic, sealed.payload, dec);
    expect(out.ok).toBe(true);
    expect(w.check(first.sensorId, first.boot, first.seq)).toBe("new");
    w.commit(first.sensorId, first.boot, first.seq);
    expect(w.check(first.sensorId, first.boot, first.seq)).toBe("duplicate");
    w.commit(first.sensorId, first.boot, 1000);
    expect(w.check(first.sensorId, first.boot, first.seq)).toBe("replay");
  });
});
