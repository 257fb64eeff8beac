import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../../shared/state-dir";
import { scrapeMetrics, sumMetric } from "../../testkit/ingest/spawn-ingest";
import { connectFleet, spawnIngest, startTestStack, waitUntil, type TestStack } from "./helpers/stack";

function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", join(repoRoot(), "host/src/cli/ingest.ts"), ...args],
      {
        cwd: repoRoot(),
        env: { ...process.env, ...env },
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

const execFileAsync = promisify(execFile);
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({ devices: 2 });
});

afterAll(async () => {
  await stack?.cleanup();
});

describe("npm run ingest", () => {
  it("--help lists the options", async () => {
    const r = await runCli(["--help"]);
    expect(r.code).toBe(0);
    for (const flag of [
      "--broker",
      "--store-url",
      "--org",
      "--bucket",
      "--token-file",
      "--encrypted",
      "--plain",
      "--group",
      "--metrics-port",
    ])
      expect(r.stdout).toContain(flag);
  });

  it("refuses to guess whether the fleet encrypts, with one clear line", async () => {
    const r = await runCli(["--broker", stack.broker.url, "--store-url", stack.vm.url], {
      EST_STATE_DIR: stack.stateDir,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--encrypted or --plain/);
  });

  it("fails with one line when its certificate is missing", async () => {
    const r = await runCli(
      [
        "--broker",
        stack.broker.url,
        "--store-url",
        stack.vm.url,
        "--plain",
        "--cert",
        join(stack.dir, "nope.pem"),
      ],
      {
        EST_STATE_DIR: stack.stateDir,
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("cannot read certificate");
  });

  it("fails with one line when the broker refuses its certificate (not from the fleet CA)", async () => {
    const key = join(stack.dir, "foreign-key.pem");
    const cert = join(stack.dir, "foreign-cert.pem");
    await execFileAsync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-subj",
      "/CN=ingest",
      "-days",
      "1",
      "-keyout",
      key,
      "-out",
      cert,
    ]);
    const r = await runCli(
      [
        "--broker",
        stack.broker.url,
        "--store-url",
        stack.vm.url,
        "--plain",
        "--cert",
        cert,
        "--key",
        key,
        "--metrics-port",
        "0",
      ],
      {
        EST_STATE_DIR: stack.stateDir,
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n").at(-1)).toMatch(/^ingest: /);
  }, 30_000);

  it("reads the token from a file and never prints it; SIGTERM flushes and exits 0", async () => {
    const token = "tok-" + "x".repeat(40);
    const tokenFile = join(stack.dir, "token");
    await writeFile(tokenFile, token + "\n", { mode: 0o600 });
    const p = await spawnIngest(stack, {
      encrypted: false,
      extraArgs: ["--token-file", tokenFile, "--progress-interval", "1"],
    });
    const fleet = await connectFleet(stack, { encrypted: false });
    await fleet.publishEach(3);
    await waitUntil(
      async () => sumMetric(await scrapeMetrics(p.metricsPort), "ingest_written_total") >= 6,
      20_000,
      "6 written",
    );
    await fleet.end();
    await waitUntil(() => p.output.some((l) => /received 6 .*written 6/.test(l)), 10_000, "a progress line");
    expect(await p.stop("SIGTERM")).toBe(0);
    const all = p.output.join("\n");
    expect(all).toContain("flushing and disconnecting");
    expect(all).not.toContain(token);
  });
});
