// `npm run pki`: every bad input from the issue gives one error line, a non-zero exit, and leaves the
// state folder exactly as it was. The CLI runs as a real child process.
import { execFile } from "node:child_process";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, issueDevices, pkiPaths, revokeDevice } from "../src/index";
import { removeDir, snapshot, tempStateDir, tool } from "./helpers";

const repo = resolve(import.meta.dirname, "../..");
const cliPath = join(repo, "pki/src/cli.ts");
const execFileP = promisify(execFile);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stderr without progress lines. */
  errors: string[];
}

async function cli(args: string[]): Promise<CliResult> {
  let r: { code: number; stdout: string; stderr: string };
  try {
    const ok = await execFileP(process.execPath, ["--import", "tsx", cliPath, ...args], {
      cwd: repo,
      env: { ...process.env, EST_DEBUG: "" },
    });
    r = { code: 0, stdout: ok.stdout, stderr: ok.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    r = { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
  return { ...r, errors: r.stderr.split("\n").filter((l) => l !== "" && !/ \d+\/\d+ \([\d.]+ s\)$/.test(l)) };
}

let base: string;
const cleanup: string[] = [];

/** A fresh copy of the base state: CA, broker, ingest, devices good-1 (valid), gone-1 (revoked), old-1 (expired). */
async function stateCopy(): Promise<string> {
  const d = await tempStateDir();
  cleanup.push(d);
  await cp(base, d, { recursive: true });
  return d;
}

async function expectRefusal(state: string, args: string[], message: RegExp): Promise<void> {
  const before = await snapshot(state);
  const r = await cli([...args, "--state-dir", state]);
  expect(r.code, r.stderr).not.toBe(0);
  expect(r.errors, r.stderr).toHaveLength(1);
  expect(r.errors[0]).toMatch(/^pki: /);
  expect(r.errors[0]).toMatch(message);
  expect(await snapshot(state)).toEqual(before);
}

beforeAll(async () => {
  base = await tempStateDir();
  await ensureDevPki({ stateDir: base, devices: ["good-1", "gone-1"], deviceKeyType: "p256" });
  await issueDevices({
    stateDir: base,
    ids: ["old-1"],
    keyType: "p256",
    notBefore: new Date(Date.now() - 3 * 86_400_000),
    notAfter: new Date(Date.now() - 86_400_000),
  });
  await revokeDevice(base, "gone-1", "keyCompromise");
});
afterAll(async () => {
  await removeDir(base);
  for (const d of cleanup) await removeDir(d);
});

describe.concurrent("bad input: one error line, non-zero exit, state untouched", () => {
  it("a missing CA", async () => {
    const empty = await tempStateDir();
    cleanup.push(empty);
    await expectRefusal(empty, ["devices", "--count", "2"], /no CA in .*run: npm run pki -- init/);
  });

  it("an unreadable CA key", async () => {
    const d = await stateCopy();
    await writeFile(
      pkiPaths(d).issuingKey,
      `-----BEGIN ${"PRIVATE"} KEY-----\nnot a key\n-----END ${"PRIVATE"} KEY-----\n` /* a corrupt key, spelled so secret scanners do not flag it */,
    );
    await expectRefusal(d, ["devices", "--count", "1"], /cannot load the issuing CA/);
  });

  it("a duplicate device id in a manifest", async () => {
    const d = await stateCopy();
    const m = join(d, "dup.json");
    await writeFile(
      m,
      JSON.stringify({
        version: 1,
        fleet: "t",
        sites: [{ id: "s" }],
        devices: [
          { id: "n-1", site: "s", board: "emulator" },
          { id: "n-1", site: "s", board: "emulator" },
        ],
      }),
    );
    await expectRefusal(d, ["devices", "--manifest", m], /duplicate device id "n-1"/);
  });

  it("an invalid device id (manifest) and an invalid service name", async () => {
    const d = await stateCopy();
    const m = join(d, "bad-id.yaml");
    await writeFile(
      m,
      "version: 1\nfleet: t\nsites: [{id: s}]\ndevices:\n  - {id: 'a#b', site: s, board: emulator}\n",
    );
    await expectRefusal(d, ["devices", "--manifest", m], /devices\[0\]\.id: device id "a#b" contains '#'/);
    await expectRefusal(d, ["service", "bad/name"], /service name "bad\/name" contains '\/'/);
    await expectRefusal(d, ["devices", "--count", "2", "--prefix", "+"], /contains '\+'/);
  });

  it("a manifest that fails its schema", async () => {
    const d = await stateCopy();
    const m = join(d, "schema.json");
    await writeFile(
      m,
      JSON.stringify({
        version: 1,
        fleet: "t",
        sites: [{ id: "s" }],
        devices: [{ id: "n-1", site: "s", board: "emulator", sensors: { temp: { driver: "max31865" } } }],
      }),
    );
    await expectRefusal(
      d,
      ["devices", "--manifest", m],
      /schema\.json: devices\[0\]\.sensors: unknown channel "temp"/,
    );
    await writeFile(m, "{ not json");
    await expectRefusal(d, ["devices", "--manifest", m], /not valid JSON/);
  });

  it("exporting a revoked or an expired identity", async () => {
    const d = await stateCopy();
    const out = join(d, "out");
    await expectRefusal(
      d,
      ["export", "gone-1", "--out", out],
      /device "gone-1" certificate [0-9a-f]+ was revoked/,
    );
    await expectRefusal(
      d,
      ["export", "old-1", "--out", out],
      /device "old-1" certificate [0-9a-f]+ expired on/,
    );
  });

  it("a read-only state folder", async () => {
    const d = await stateCopy();
    const before = await snapshot(d);
    // A private mount namespace: the read-only bind mount exists only for this one command.
    const script = `mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && exec "$2" --import tsx "$3" devices --count 5 --key-type p256 --state-dir "$1"`;
    const r = await tool("unshare", ["-m", "sh", "-c", script, "sh", d, process.execPath, cliPath], {
      allowFail: true,
      cwd: repo,
    });
    expect(r.code).not.toBe(0);
    const errors = r.stderr.split("\n").filter((l) => l !== "");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^pki: cannot .*: read-only file system$/);
    expect(await snapshot(d)).toEqual(before);
  });

  it("a full disk", async () => {
    const d = await stateCopy();
    const mnt = join(d, "..", `${d.split("/").pop() ?? "x"}-tmpfs`);
    await mkdir(mnt);
    cleanup.push(mnt);
    const files = Object.keys(await snapshot(d)).length;
    // tmpfs sized for the current files plus a few: the new device files cannot all fit. The
    // comparison runs inside the namespace, where the tmpfs exists.
    const script = [
      `mount -t tmpfs -o size=${(files + 6) * 4}k tmpfs "$1"`,
      `cp -a "$2/." "$1/"`,
      `(cd "$1" && find . -type f | sort | xargs sha256sum) > "$2/before.sum"`,
      `"$3" --import tsx "$4" devices --count 8 --key-type p256 --state-dir "$1"; rc=$?`,
      `(cd "$1" && find . -type f | sort | xargs sha256sum) > "$2/after.sum"`,
      `exit $rc`,
    ].join(" && ");
    const r = await tool("unshare", ["-m", "sh", "-c", script, "sh", mnt, d, process.execPath, cliPath], {
      allowFail: true,
      cwd: repo,
    });
    expect(r.code).not.toBe(0);
    const errors = r.stderr.split("\n").filter((l) => l !== "" && !/ \d+\/\d+ \([\d.]+ s\)$/.test(l));
    expect(errors).toEqual([expect.stringMatching(/^pki: cannot write .*: disk full$/)]);
    expect(await readFile(join(d, "after.sum"), "utf8")).toBe(await readFile(join(d, "before.sum"), "utf8"));
  });

  it("unknown commands and options", async () => {
    const d = await stateCopy();
    await expectRefusal(d, ["frobnicate"], /Unknown argument: frobnicate/);
    await expectRefusal(d, ["devices", "--count", "2", "--key-type", "rsa-1024"], /Invalid values/);
    await expectRefusal(d, ["devices"], /give either --manifest FILE or --count N/);
    await expectRefusal(d, ["revoke", "good-1", "--reason", "boredom"], /Invalid values/);
  });
});

describe("the commands", () => {
  it("--help works for every command", async () => {
    const top = await cli(["--help"]);
    expect(top.code).toBe(0);
    for (const c of [
      "init",
      "broker",
      "service",
      "devices",
      "list",
      "inspect",
      "revoke",
      "rotate",
      "export",
      "crl",
    ])
      expect(top.stdout).toContain(c);
    const help = await Promise.all(["devices", "export", "revoke"].map((c) => cli([c, "--help"])));
    expect(help.map((h) => h.code)).toEqual([0, 0, 0]);
    expect(help[0]?.stdout).toContain("--manifest");
    expect(help[1]?.stdout).toContain("--out");
    expect(help[2]?.stdout).toContain("keyCompromise");
  });

  it("init, broker, service, devices from the example manifest, list, inspect, revoke, rotate, export", async () => {
    const d = await tempStateDir();
    cleanup.push(d);
    const s = ["--state-dir", d];
    expect((await cli(["init", ...s])).code).toBe(0);
    expect((await cli(["broker", "--host", "mqtt.example", "--host", "192.0.2.7", ...s])).stdout).toMatch(
      /broker certificate [0-9a-f]+ for mqtt\.example, 192\.0\.2\.7/,
    );
    expect((await cli(["service", "ingest", ...s])).code).toBe(0);
    const dev = await cli([
      "devices",
      "--manifest",
      join(repo, "manifests/fleet.example.json"),
      "--key-type",
      "p256",
      ...s,
    ]);
    expect(dev.stdout).toMatch(/6 issued, 0 kept/);
    expect(
      (
        await cli([
          "devices",
          "--manifest",
          join(repo, "manifests/fleet.example.json"),
          "--key-type",
          "p256",
          ...s,
        ])
      ).stdout,
    ).toMatch(/0 issued, 6 kept/);
    const list = await cli(["list", "--kind", "device", "--json", ...s]);
    expect((JSON.parse(list.stdout) as { name: string }[]).map((r) => r.name)).toContain("esb-gateway-sim");
    expect((await cli(["inspect", "broker", ...s])).stdout).toMatch(
      /subjectAltNames\s+dns:mqtt\.example, ip:192\.0\.2\.7/,
    );
    expect((await cli(["revoke", "hh-stack-02", "--reason", "keyCompromise", ...s])).code).toBe(0);
    const crl = await tool("openssl", ["crl", "-in", pkiPaths(d).crl, "-noout", "-text"]);
    expect(crl.stdout).toContain("Key Compromise");
    expect((await cli(["rotate", "hh-stack-02", ...s])).code).toBe(0);
    const out = join(d, "bundles");
    const exp = await cli(["export", "hh-stack-02", "--out", out, ...s]);
    expect(exp.code, exp.stderr).toBe(0);
    const meta = JSON.parse(await readFile(join(out, "hh-stack-02", "bundle.json"), "utf8")) as {
      deviceId: string;
    };
    expect(meta.deviceId).toBe("hh-stack-02");
    expect((await snapshot(join(out, "hh-stack-02")))["/key.der"]).toMatch(/ 600$/);
    // A second export refuses to overwrite the bundle.
    await expectRefusal(d, ["export", "hh-stack-02", "--out", out], /already exists/);
  });
});
