import { describe, expect, it } from "vitest";
import {
  identityToEntries,
  nextBootCounter,
  parseIdentity,
  PROV_KEY_LIST,
  PROV_NAMESPACE,
  readBootCounter,
  NVS_KEY_MAX_CHARS,
} from "../../src/identity/nvs-layout";
import type { DeviceIdentity, ProvEntry } from "../../src/identity/nvs-layout";

const der = (n: number): Uint8Array => {
  const b = new Uint8Array(n).fill(7);
  b[0] = 0x30;
  return b;
};

const full: DeviceIdentity = {
  deviceId: "elx-site1-0001",
  broker: "mqtts://broker.example.net:8883",
  brokerHost: "broker.example.net",
  port: 8883,
  intervalMs: 5000,
  site: "site1",
  tls: {
    caDer: der(600),
    certDer: der(900),
    keyDer: der(1200),
    brokerPins: [new Uint8Array(32).fill(1), new Uint8Array(32).fill(2)],
  },
  payload: { keyId: 3, key: new Uint8Array(32).fill(9) },
  wifi: { ssid: "plant-floor", psk: "correct horse battery" },
};

/** What Moddable's Preference.get returns on ESP32: u8 as boolean, blobs as ArrayBuffer. */
function moddableGetter(entries: ProvEntry[]): (k: string) => unknown {
  const m = new Map<string, unknown>();
  for (const e of entries) {
    if (e.type === "u8") m.set(e.key, e.value !== 0);
    else if (e.type === "blob") m.set(e.key, e.value.slice().buffer);
    else m.set(e.key, e.value);
  }
  return (k) => m.get(k);
}

describe("NVS identity layout", () => {
  it("keeps every key within NVS limits and types Preference can read back", () => {
    expect(PROV_NAMESPACE.length).toBeLessThanOrEqual(NVS_KEY_MAX_CHARS);
    const keys = new Set<string>();
    for (const spec of PROV_KEY_LIST) {
      expect(spec.key.length).toBeLessThanOrEqual(NVS_KEY_MAX_CHARS);
      expect(["u8", "i32", "string", "blob"]).toContain(spec.type);
      keys.add(spec.key);
    }
    expect(keys.size).toBe(PROV_KEY_LIST.length);
  });

  it("round-trips an identity through entries and Moddable-style values", () => {
    const r = parseIdentity(moddableGetter(identityToEntries(full, 4)));
    expect(r).toEqual({ ok: true, identity: full });
    expect(readBootCounter(moddableGetter(identityToEntries(full, 4)))).toBe(4);
  });

  it("accepts a plain-MQTT, unencrypted identity without TLS material", () => {
    const plain: DeviceIdentity = {
      ...full,
      broker: "mqtt://10.0.0.2",
      brokerHost: "10.0.0.2",
      port: 1883,
      tls: null,
      payload: null,
      wifi: null,
    };
    delete plain.site;
    expect(parseIdentity(moddableGetter(identityToEntries(plain)))).toEqual({ ok: true, identity: plain });
  });

  it("reports every missing key of an empty partition, never throws", () => {
    const r = parseIdentity(() => undefined);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.key).sort()).toEqual([
      "broker",
      "device_id",
      "encrypt",
      "interval",
      "port",
      "secure",
    ]);
    expect(r.errors.every((e) => e.code === "missing")).toBe(true);
  });

  it("requires the TLS material when secure and the payload key when encrypting", () => {
    const entries = identityToEntries(full).filter((e) => !["key_der", "payload_key"].includes(e.key));
    const r = parseIdentity(moddableGetter(entries));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toEqual([
      { key: "key_der", code: "missing", message: "key_der (blob) is missing" },
      { key: "payload_key", code: "missing", message: "payload_key (blob) is missing" },
    ]);
  });

  it("rejects mistyped and malformed values with specific errors and without echoing secrets", () => {
    const values: Record<string, unknown> = {
      device_id: "bad id/with+wildcards",
      broker: "http://x",
      port: 70000,
      interval: -5,
      secure: true,
      encrypt: 1,
      ca_der: new Uint8Array([1, 2, 3]).buffer,
      cert_der: der(10).buffer,
      key_der: "s3cr3t-key-material",
      key_id: 300,
      payload_key: new Uint8Array(16).buffer,
      wifi_psk: "short",
      broker_pins: new Uint8Array(33).buffer,
    };
    const r = parseIdentity((k) => values[k]);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const codes = Object.fromEntries(r.errors.map((e) => [e.key, e.code]));
    expect(codes).toEqual({
      device_id: "invalid",
      port: "invalid",
      interval: "invalid",
      broker: "invalid",
      key_der: "wrong_type",
      key_id: "invalid",
      payload_key: "invalid",
      wifi_psk: "invalid",
      broker_pins: "invalid",
    });
    expect(JSON.stringify(r.errors)).not.toContain("s3cr3t");
    expect(JSON.stringify(r.errors)).not.toContain("short");
  });

  it("carries the broker pins through NVS in order, and refuses a TLS identity without them", () => {
    const back = parseIdentity(moddableGetter(identityToEntries(full)));
    expect(back.ok && back.identity.tls?.brokerPins).toEqual(full.tls!.brokerPins);
    const withoutPins = identityToEntries(full).filter((e) => e.key !== "broker_pins");
    const r = parseIdentity(moddableGetter(withoutPins));
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.errors).toEqual([
        { key: "broker_pins", code: "missing", message: "broker_pins (blob) is missing" },
      ]);
    const fivePins = identityToEntries({
      ...full,
      tls: { ...full.tls!, brokerPins: Array.from({ length: 5 }, () => new Uint8Array(32)) },
    });
    const tooMany = parseIdentity(moddableGetter(fivePins));
    expect(tooMany.ok).toBe(false);
  });

  it("flags a broker URL whose scheme or port disagrees with secure/port", () => {
    const entries = identityToEntries({ ...full, broker: "mqtt://broker.example.net:1883" });
    const r = parseIdentity(moddableGetter(entries));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.message)).toEqual([
      "broker scheme mqtt disagrees with secure=1",
      "broker URL port 1883 disagrees with port=8883",
    ]);
  });

  it("advances the boot counter within i32", () => {
    expect(nextBootCounter(0)).toBe(1);
    expect(nextBootCounter(0x7ffffffe)).toBe(0x7fffffff);
    // Wrapping to 1 would reuse (boot, seq) nonces under the same key.
    expect(() => nextBootCounter(0x7fffffff)).toThrow(/boot counter exhausted at 2147483647: re-provision/);
    expect(readBootCounter(() => undefined)).toBe(0);
  });
});

describe("NVS key `brokers` (failover list)", () => {
  const failover = [
    { host: "n2.example.net", port: 8884 },
    { host: "n3.example.net", port: 8885 },
  ];

  it("round-trips as one string entry, and is absent when there is none", () => {
    const entries = identityToEntries({ ...full, failover });
    expect(entries).toContainEqual({
      key: "brokers",
      type: "string",
      value: "n2.example.net:8884,n3.example.net:8885",
    });
    const r = parseIdentity(moddableGetter(entries));
    expect(r.ok && r.identity.failover).toEqual(failover);
    const plain = parseIdentity(moddableGetter(identityToEntries(full)));
    expect(plain.ok && plain.identity.failover).toBeUndefined();
    expect(identityToEntries(full).some((e) => e.key === "brokers")).toBe(false);
  });

  it.each([
    ["n2.example.net", /not host:port/],
    ["", /is empty/],
    ["broker.example.net:8883", /home broker/],
    ["n2.example.net:8884,n2.example.net:8884", /listed twice/],
    [`${"h".repeat(200)}:1,`.repeat(6) + "x:1", /longer than 1024 bytes/],
  ])("refuses %s with a reason on the key", (value, reason) => {
    const entries = identityToEntries(full).concat({ key: "brokers", type: "string", value });
    const r = parseIdentity(moddableGetter(entries));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      const e = r.errors.find((x) => x.key === "brokers");
      expect(e?.code).toBe("invalid");
      expect(e?.message).toMatch(reason);
    }
  });
});
