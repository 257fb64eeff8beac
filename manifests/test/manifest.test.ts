import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isValidDeviceId as firmwareRule } from "../../firmware/src/telemetry/reading";
import {
  DEV_FLEET_PATH,
  EXAMPLE_FLEET_PATH,
  ManifestError,
  deviceIdProblem,
  fleetManifestSchema,
  generateDeviceIds,
  isValidDeviceId,
  loadManifest,
  parseManifest,
  setProvisioning,
  validateManifest,
} from "../src/index";

const root = resolve(import.meta.dirname, "..");

function errorsOf(data: unknown): string[] {
  const r = validateManifest(data);
  if (r.ok) throw new Error("expected the manifest to be refused");
  return r.errors;
}

const minimal = (devices: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  version: 1,
  fleet: "t",
  sites: [{ id: "s" }],
  devices,
  ...extra,
});

describe("the shipped manifests", () => {
  it("fleet.schema.json is the schema the validator uses", async () => {
    expect(JSON.parse(await readFile(join(root, "fleet.schema.json"), "utf8"))).toEqual(
      JSON.parse(JSON.stringify(fleetManifestSchema)),
    );
  });

  it("the dev fleet and the example load, with defaults applied", async () => {
    const dev = await loadManifest(DEV_FLEET_PATH);
    expect(dev.devices.map((d) => d.id)).toEqual(["dev-0001", "dev-0002", "dev-0003"]);
    expect(
      dev.devices.every(
        (d) => d.board === "emulator" && d.keyType === "rsa-2048" && Object.keys(d.sensors).length === 6,
      ),
    ).toBe(true);
    const ex = await loadManifest(EXAMPLE_FLEET_PATH);
    expect(ex.sites.map((s) => s.id)).toEqual(["hamburg-pem", "esbjerg-alk"]);
    const hh1 = ex.devices.find((d) => d.id === "hh-stack-01");
    expect(hh1?.sensors.temperature_c?.calibration).toEqual({ gain: 1, offset: -0.15 });
    expect(hh1?.sensors.voltage_v).toEqual({ driver: "ina228", address: 64 });
    expect(ex.devices.find((d) => d.id === "hh-stack-03")?.board).toBe("esp32-wrover");
    expect(ex.devices.find((d) => d.id === "esb-gateway-sim")?.keyType).toBe("p256");
  });

  it("YAML and JSON give the same manifest", () => {
    const yaml =
      "version: 1\nfleet: t\nsites:\n  - id: s\ndevices:\n  - id: d-1\n    site: s\n    board: emulator\n    sensors:\n      current_a: { driver: ina228, calibration: { gain: 1.01, offset: 0 } }\n";
    const json = JSON.stringify(
      minimal([
        {
          id: "d-1",
          site: "s",
          board: "emulator",
          sensors: { current_a: { driver: "ina228", calibration: { gain: 1.01, offset: 0 } } },
        },
      ]),
    );
    expect(parseManifest(yaml, "yaml")).toEqual(parseManifest(json, "json"));
  });
});

describe("intervals", () => {
  it("a device's intervalMs comes from it, else the defaults, else 5000; out of range is refused", () => {
    const r = validateManifest(
      minimal(
        [
          { id: "a", site: "s" },
          { id: "b", site: "s", intervalMs: 100 },
        ],
        {
          defaults: { board: "x", intervalMs: 1000 },
        },
      ),
    );
    expect(r.ok && r.value.devices.map((d) => d.intervalMs)).toEqual([1000, 100]);
    const plain = validateManifest(minimal([{ id: "a", site: "s", board: "x" }]));
    expect(plain.ok && plain.value.devices[0]?.intervalMs).toBe(5000);
    expect(errorsOf(minimal([{ id: "a", site: "s", board: "x", intervalMs: 50 }])).join()).toMatch(
      /intervalMs/,
    );
  });
});

describe("refused manifests, with errors that say where", () => {
  it("ids that are not safe as topic level, CN and NVS string", () => {
    for (const [id, why] of [
      ["a/b", "contains '/'"],
      ["a+b", "contains '+'"],
      ["a#b", "contains '#'"],
      ["a b", "contains ' '"],
      ["ä", "contains 'ä'"],
      [".hidden", "must not start with '.'"],
      ["x".repeat(33), "longer than 32"],
      ["", "empty"],
      ["nul\u0000", "control character (U+0000)"],
    ] as const) {
      const errors = errorsOf(minimal([{ id, site: "s", board: "b" }]));
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(/^devices\[0\]\.id: device id /);
      expect(errors[0]).toContain(why);
    }
  });

  it("duplicate ids (also ignoring case), unknown sites, missing boards, duplicate sites", () => {
    expect(
      errorsOf(
        minimal([
          { id: "a", site: "s", board: "b" },
          { id: "a", site: "s", board: "b" },
        ]),
      ),
    ).toEqual(['devices[1].id: duplicate device id "a" (also devices[0])']);
    expect(
      errorsOf(
        minimal([
          { id: "a", site: "s", board: "b" },
          { id: "A", site: "s", board: "b" },
        ]),
      ),
    ).toEqual(['devices[1].id: duplicate device id "A" (also devices[0], ignoring case)']);
    expect(errorsOf(minimal([{ id: "a", site: "nowhere", board: "b" }]))).toEqual([
      'devices[0].site: unknown site "nowhere" (sites: s)',
    ]);
    expect(errorsOf(minimal([{ id: "a", site: "s" }]))).toEqual([
      "devices[0].board: missing (and no defaults.board)",
    ]);
    expect(errorsOf({ ...minimal([]), sites: [{ id: "s" }, { id: "s" }] })).toEqual([
      'sites[1].id: duplicate site id "s"',
    ]);
  });

  it("schema violations: unknown properties, channels and drivers, incomplete loop settings, bad calibration", () => {
    expect(errorsOf(minimal([], { owner: "me" }))).toEqual(['(top level): unknown property "owner"']);
    expect(errorsOf({ fleet: "t", sites: [{ id: "s" }], devices: [] })).toEqual([
      '(top level): missing property "version"',
    ]);
    expect(
      errorsOf(minimal([{ id: "a", site: "s", board: "b", sensors: { temp: { driver: "max31865" } } }])),
    ).toEqual(['devices[0].sensors: unknown channel "temp"']);
    expect(
      errorsOf(
        minimal([{ id: "a", site: "s", board: "b", sensors: { temperature_c: { driver: "pt1000" } } }]),
      )[0],
    ).toMatch(/^devices\[0\]\.sensors\.temperature_c\.driver: "pt1000" is not one of "max31865", /);
    expect(
      errorsOf(
        minimal([
          { id: "a", site: "s", board: "b", sensors: { pressure_bar: { driver: "ads1115-loop", input: 0 } } },
        ]),
      ),
    ).toEqual([
      'devices[0].sensors.pressure_bar: missing property "rangeLow"',
      'devices[0].sensors.pressure_bar: missing property "rangeHigh"',
    ]);
    expect(
      errorsOf(
        minimal([
          {
            id: "a",
            site: "s",
            board: "b",
            sensors: { voltage_v: { driver: "ina228", calibration: { gain: 0, offset: 0 } } },
          },
        ]),
      ),
    ).toEqual(["devices[0].sensors.voltage_v.calibration.gain: must NOT be valid"]);
  });

  it("parse errors and unreadable files name the file", async () => {
    expect(() => parseManifest("{", "json", "f.json")).toThrow(/^f\.json: not valid JSON: /);
    expect(() => parseManifest("a: [", "yaml", "f.yaml")).toThrow(/^f\.yaml: not valid YAML: /);
    expect(() => parseManifest("a: 1\na: 2\n", "yaml", "f.yaml")).toThrow(
      /not valid YAML: .*[Mm]ap keys must be unique/,
    );
    await expect(loadManifest(join(root, "no-such.json"))).rejects.toThrow(/no-such\.json: no such file/);
    const err = (() => {
      try {
        parseManifest(JSON.stringify(minimal([{ id: "a/b", site: "x" }])), "json", "m.json");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as ManifestError).message).not.toContain("\n");
    expect((err as ManifestError).errors.every((e) => e.startsWith("m.json: "))).toBe(true);
  });
});

describe("device ids", () => {
  it("deviceIdProblem explains exactly the ids the firmware's isValidDeviceId refuses", () => {
    const chars = fc.constantFrom(..."aZ09._-/+# \u0000\u007fé".split(""));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 40 }),
          fc.array(chars, { maxLength: 36 }).map((a) => a.join("")),
        ),
        (id) => {
          expect(deviceIdProblem(id) === undefined).toBe(firmwareRule(id));
          expect(isValidDeviceId(id)).toBe(firmwareRule(id));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("generateDeviceIds pads so ids sort, and refuses prefixes that make invalid ids", () => {
    expect(generateDeviceIds("dev-", 3)).toEqual(["dev-0001", "dev-0002", "dev-0003"]);
    expect(generateDeviceIds("n", 12_000).at(-1)).toBe("n12000");
    expect(() => generateDeviceIds("a/", 2)).toThrow(/prefix "a\/" gives invalid ids/);
    expect(() => generateDeviceIds("x".repeat(30), 2)).toThrow(/longer than 32/);
  });
});

describe("provisioning records on devices", () => {
  const record = {
    mac: "24:0a:c4:12:34:56",
    certSerial: "0a1b",
    certSha256: "f".repeat(64),
    keyId: 1,
    at: "2026-11-26T09:00:00.000Z",
  };

  it("the schema takes a complete record and refuses a malformed or duplicated one", () => {
    const ok = validateManifest(minimal([{ id: "a", site: "s", board: "b", provisioning: record }]));
    expect(ok.ok && ok.value.devices[0]?.provisioning).toEqual(record);
    expect(
      errorsOf(
        minimal([{ id: "a", site: "s", board: "b", provisioning: { ...record, mac: "24-0A-C4-12-34-56" } }]),
      ),
    ).toEqual([
      'devices[0].provisioning.mac: "24-0A-C4-12-34-56" does not match ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$',
    ]);
    expect(
      errorsOf(minimal([{ id: "a", site: "s", board: "b", provisioning: { ...record, key: "secret" } }])),
    ).toEqual(['devices[0].provisioning: unknown property "key"']);
    expect(
      errorsOf(
        minimal([
          { id: "a", site: "s", board: "b", provisioning: record },
          { id: "c", site: "s", board: "b", provisioning: record },
        ]),
      ),
    ).toEqual(['devices[1].provisioning.mac: board 24:0a:c4:12:34:56 is also recorded on devices[0] ("a")']);
  });

  it("setProvisioning sets and removes records in JSON (2-space) and refuses unknown devices", () => {
    const text = `${JSON.stringify(
      minimal([
        { id: "a", site: "s", board: "b", provisioning: record },
        { id: "c", site: "s", board: "b" },
      ]),
    )}\n`;
    const moved = setProvisioning(
      text,
      "json",
      new Map([
        ["a", null],
        ["c", { ...record, keyId: null }],
      ]),
    );
    expect(moved).toBe(`${JSON.stringify(JSON.parse(moved), null, 2)}\n`);
    const m = parseManifest(moved, "json");
    expect(m.devices.map((d) => d.provisioning ?? null)).toEqual([null, { ...record, keyId: null }]);
    expect(() => setProvisioning(text, "json", new Map([["zz", record]]), "f.json")).toThrow(
      /^f\.json: no device "zz" to record provisioning on$/,
    );
    // Two devices on one board would be an invalid manifest: refused, not written.
    expect(() => setProvisioning(text, "json", new Map([["c", record]]), "f.json")).toThrow(
      /is also recorded on devices\[0\]/,
    );
  });
});
