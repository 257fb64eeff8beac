// The one fleet settings file: parsed strictly, and every command that reads it refuses a flag that
// contradicts it, so provisioning, the emulator and the ingest cannot run with different payload modes.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readingLine } from "../../src/ingest/line-protocol";
import { sampleReading } from "../../testkit/ingest/fleet-publisher";
import {
  DEFAULT_SETTINGS_PATH,
  loadFleetSettings,
  parseFleetSettings,
  resolveManifest,
  resolvePayloadMode,
} from "../../src/settings/fleet-settings";
import { repoRoot } from "../../../shared/state-dir";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-settings-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs a CLI; resolves with its exit code and stderr. */
async function cli(script: string, args: string[], env: Record<string, string> = {}) {
  try {
    const r = await promisify(execFile)(process.execPath, ["--import", "tsx", script, ...args], {
      cwd: repoRoot(),
      env: { ...process.env, EST_STATE_DIR: join(dir, "state"), ...env },
      timeout: 60_000,
    });
    return { code: 0, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? -1, stderr: e.stderr ?? "" };
  }
}

describe("fleet settings", () => {
  it("the repository's file parses: encrypted, the dev manifest, resolved against the file's folder", async () => {
    const s = await loadFleetSettings(DEFAULT_SETTINGS_PATH);
    expect(s.payloadMode).toBe("encrypted");
    expect(s.manifest).toBe(join(repoRoot(), "manifests/fleet.dev.json"));
  });

  it("refuses unknown keys, a bad mode and a missing manifest, naming the file", () => {
    expect(() =>
      parseFleetSettings('{"payloadMode":"plain","manifest":"m.json","mode":1}', "f.json"),
    ).toThrow(/f\.json: unknown setting "mode"/);
    expect(() => parseFleetSettings('{"payloadMode":"aes","manifest":"m.json"}', "f.json")).toThrow(
      /payloadMode must be "plain" or "encrypted"/,
    );
    expect(() => parseFleetSettings('{"payloadMode":"plain"}', "f.json")).toThrow(/manifest/);
    expect(() => parseFleetSettings("{", "f.json")).toThrow(/not valid JSON/);
  });

  it("a flag may repeat the settings but not contradict them", () => {
    const s = parseFleetSettings('{"payloadMode":"encrypted","manifest":"/m.json"}', "/x/f.json");
    expect(resolvePayloadMode(s, undefined, "--plain")).toBe("encrypted");
    expect(resolvePayloadMode(s, "encrypted", "--encrypted")).toBe("encrypted");
    expect(() => resolvePayloadMode(s, "plain", "--plain")).toThrow(/--plain contradicts the fleet settings/);
    expect(resolvePayloadMode(undefined, undefined, "--plain", "plain")).toBe("plain");
    expect(resolveManifest(s, undefined)).toBe("/m.json");
    expect(() => resolveManifest(s, "/other.json")).toThrow(/contradicts/);
  });

  it("emulated readings are stored with the tag emulated=true; a board's are not", () => {
    const emu = { ...sampleReading("emu-0001", 1, 1_700_000_000_000), fw: "emulator-1" };
    expect(readingLine(emu, "lab")).toMatch(/^electrolyser,sensor_id=emu-0001,site=lab,emulated=true /);
    expect(readingLine(sampleReading("b1", 1, 1_700_000_000_000), "lab")).not.toContain("emulated");
  });
});

describe("the commands read them", { timeout: 120_000 }, () => {
  it("the ingest refuses --plain against settings that say encrypted", async () => {
    const settings = join(dir, "enc.json");
    await writeFile(
      settings,
      JSON.stringify({ payloadMode: "encrypted", manifest: join(repoRoot(), "manifests/fleet.dev.json") }),
    );
    const r = await cli("host/src/cli/ingest.ts", [
      "--broker",
      "mqtts://127.0.0.1:1",
      "--store-url",
      "http://127.0.0.1:1",
      "--settings",
      settings,
      "--plain",
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /--plain contradicts the fleet settings .*enc\.json \(payloadMode "encrypted"\)/,
    );
  });

  it("the emulator will not mint identities into an external broker's CA without --mint-into-ca", async () => {
    const r = await cli("host/src/cli/emulate.ts", ["--count", "3", "--broker", "mqtts://127.0.0.1:1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/external broker: emulating mints 3 device identities .*--mint-into-ca/);
  });
});
