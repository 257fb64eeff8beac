// `npm run provision -- sim`: the identity a board would get, written into the Moddable Linux simulator's
// Preference file, read back the way the simulator's Preference.get returns values.
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseIdentity, PROV_NAMESPACE } from "../../../firmware/src/identity/nvs-layout";
import { provisionedBrokerPins } from "../../../pki/src/index";
import {
  deriveDeviceKey,
  DeviceKeyCache,
  loadPayloadKeyring,
  loadPayloadMaster,
} from "../../src/crypto/device-keys";
import { GrantsView } from "../../src/crypto/payload-grants";
import { BROKER, makeState, runCli } from "./harness";

let state: string;

beforeAll(async () => {
  state = await makeState(["sim-0001"]);
});
afterAll(async () => {
  await rm(state, { recursive: true, force: true });
});

/** What modules/files/preference/lin/preference.js returns for a stored value. */
function simulatorGet(file: Record<string, Record<string, unknown>>, key: string): unknown {
  const v = file[PROV_NAMESPACE]?.[key];
  if (v && typeof v === "object")
    return Uint8Array.from((v as { buffer: string }).buffer.split(",").map(Number)).buffer;
  return v;
}

describe("npm run provision -- sim", () => {
  it("writes the board's identity, broker pins and payload key, keeps other domains, mode 0600", async () => {
    const out = join(state, "modpreferences.json");
    await writeFile(out, JSON.stringify({ other: { kept: 1 }, prov: { stale: "x", boot: 123456789 } }));
    const run = await runCli(
      ["sim", "--device", "sim-0001", "--broker", BROKER, "--interval", "1000", "--out", out],
      state,
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/wrote .*sim-0001.*2 broker pin\(s\), boot 123456789/);
    const file = JSON.parse(await readFile(out, "utf8")) as Record<string, Record<string, unknown>>;
    expect(file.other).toEqual({ kept: 1 });
    expect(file.prov!.stale).toBeUndefined();
    const parsed = parseIdentity((k) => simulatorGet(file, k));
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    const id = parsed.identity;
    expect(id.deviceId).toBe("sim-0001");
    expect(id.intervalMs).toBe(1000);
    expect(id.tls!.brokerPins).toEqual(await provisionedBrokerPins(state));
    // A new key generation for this provisioning, granted so that the ingest opens it under its key id.
    const ingest = new DeviceKeyCache(await loadPayloadKeyring(state), new GrantsView({ stateDir: state }));
    expect(ingest.keyFor(id.payload!.keyId, "sim-0001")).toEqual(id.payload!.key);
    expect(id.payload!.key).not.toEqual(deriveDeviceKey(await loadPayloadMaster(state, 1), "sim-0001"));
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    // No secret on the console.
    expect(run.stdout + run.stderr).not.toContain(Buffer.from(id.payload!.key).toString("hex"));
  });

  it("never lowers the boot counter the simulated board stored, and refuses a damaged file without touching it", async () => {
    const out = join(state, "modpreferences-2.json");
    const run = await runCli(["sim", "--device", "sim-0001", "--broker", BROKER, "--out", out], state);
    expect(run.code).toBe(0);
    const boot = (JSON.parse(await readFile(out, "utf8")) as { prov: { boot: number } }).prov.boot;
    expect(boot).toBeGreaterThanOrEqual(Math.floor(Date.now() / 60_000) - 1);

    await writeFile(out, "{not json");
    const bad = await runCli(["sim", "--device", "sim-0001", "--broker", BROKER, "--out", out], state);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("is not a Moddable preference file");
    expect(await readFile(out, "utf8")).toBe("{not json");
  });

  it("--broker repeated: the first is home, the others go into NVS key `brokers`; a plain mqtt:// one is refused", async () => {
    const out = join(state, "modpreferences-3.json");
    const run = await runCli(
      [
        "sim",
        "--device",
        "sim-0001",
        "--broker",
        "mqtts://n1.plant:8883",
        "--broker",
        "mqtts://n2.plant:8884",
        "--broker",
        "mqtts://n3.plant",
        "--out",
        out,
      ],
      state,
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("mqtts://n1.plant:8883 then mqtts://n2.plant:8884 then mqtts://n3.plant");
    const file = JSON.parse(await readFile(out, "utf8")) as Record<string, Record<string, unknown>>;
    expect(file.prov!.brokers).toBe("n2.plant:8884,n3.plant:8883");
    const parsed = parseIdentity((k) => simulatorGet(file, k));
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    expect(parsed.identity).toMatchObject({ brokerHost: "n1.plant", port: 8883 });
    expect(parsed.identity.failover).toEqual([
      { host: "n2.plant", port: 8884 },
      { host: "n3.plant", port: 8883 },
    ]);

    for (const [second, reason] of [
      ["mqtt://n2.plant:1883", /is not mqtts:\/\/host\[:port\]/],
      ["mqtts://n1.plant:8883", /n1\.plant:8883 is given twice/],
    ] as const) {
      const bad = await runCli(
        [
          "sim",
          "--device",
          "sim-0001",
          "--broker",
          "mqtts://n1.plant:8883",
          "--broker",
          second,
          "--out",
          out,
        ],
        state,
      );
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(reason);
    }
  });
});
