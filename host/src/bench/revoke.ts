// `npm run bench -- revoke`: what revocation costs a connected fleet. The emulator's boards (a child process)
// publish at 1 Hz through `npm run broker` (the real launcher, Debian's Mosquitto) to a persistent-session
// subscriber here; once every board delivers, one board's identity is revoked (cut off through the
// dynamic-security plugin) and then a single serial of another board (a graceful restart onto the CRL).
// Printed: time to cut-off, the restart's reconnect storm, readings delayed and lost on the other boards.
import { spawn, type ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import mqtt from "mqtt";
import yargs from "yargs";
import { ensureDevPki, revokeDevice, revokeSerial, rotateDevice, type KeyType } from "../../../pki/src/index";
import { deviceIds, nextBoot, type EmulatorSummary } from "../emulator/run";
import { ensureFdLimit } from "../emulator/fd-limit";
import { repoRoot, stateDir } from "../../../shared/state-dir";

interface Seen {
  seqs: Set<number>;
  lastAt: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

/** Lines of the launcher's stdout and stderr, each with the time it arrived here. */
function watchLines(proc: ChildProcess): {
  wait(re: RegExp, since: number, timeoutMs: number): Promise<number>;
} {
  const lines: { at: number; text: string }[] = [];
  for (const input of [proc.stdout!, proc.stderr!])
    createInterface({ input }).on("line", (text) => lines.push({ at: performance.now(), text }));
  return {
    async wait(re, since, timeoutMs) {
      const until = performance.now() + timeoutMs;
      for (;;) {
        const hit = lines.find((l) => l.at >= since && re.test(l.text));
        if (hit) return hit.at;
        if (performance.now() > until)
          throw new Error(`no launcher line matching ${re} within ${timeoutMs} ms`);
        await sleep(20);
      }
    },
  };
}

export async function run(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .scriptName("npm run bench -- revoke")
    .usage(
      "$0 [options]\n\nRevocation on a running `npm run broker` with N connected emulated boards: cut-off times, reconnect storm, delayed and lost readings.",
    )
    .option("count", { type: "number", default: 1000, describe: "connected boards" })
    .option("key-type", {
      type: "string",
      choices: ["rsa-2048", "p256"],
      default: "rsa-2048",
      describe: "board keys",
    })
    .option("duration", {
      type: "number",
      default: 180,
      describe: "seconds the boards publish (the events start once every board delivered)",
    })
    .option("delayed-ms", {
      type: "number",
      default: 2000,
      describe: "a reading slower than this end to end counts as delayed",
    })
    .strict()
    .help()
    .parseAsync();
  const log = (s: string): void => console.error(s);
  const keyType = a["key-type"] as KeyType;
  ensureFdLimit(a.count + 200);
  await mkdir(stateDir(), { recursive: true });
  const state = await mkdtemp(join(stateDir(), "bench-revoke-"));
  const ids = deviceIds(a.count);
  const kicked = ids[0] as string;
  const rotated = ids[1] as string;
  let broker: ChildProcess | undefined;
  let emulator: ChildProcess | undefined;
  try {
    log(`PKI: ${a.count} ${keyType} devices in ${state} …`);
    const pki = await ensureDevPki({
      stateDir: state,
      devices: ids,
      services: ["monitor", "broker-admin"],
      deviceKeyType: keyType,
    });
    const oldSerial = new X509Certificate(await readFile(pki.device(rotated).cert, "utf8")).serialNumber;

    broker = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(repoRoot(), "host/src/cli/broker.ts"),
        "--port",
        "0",
        "--data-dir",
        join(state, "broker"),
      ],
      {
        cwd: repoRoot(),
        env: { ...process.env, EST_STATE_DIR: state },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const launcher = watchLines(broker);
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: broker!.stdout! }).on("line", (l) => {
        const m = l.match(/broker: ready (\S+)/);
        if (m?.[1]) resolve(m[1]);
      });
      broker!.once("exit", (c) => reject(new Error(`broker exited (${c})`)));
    });

    // Persistent session, so nothing queued for it is lost across the restart.
    const seen = new Map<string, Seen>();
    const latencies: { at: number; ms: number }[] = [];
    const sub = mqtt.connect(url, {
      clientId: "monitor",
      protocolVersion: 4,
      clean: false,
      reconnectPeriod: 200,
      ca: await readFile(pki.caBundle, "utf8"),
      cert: await readFile(pki.service("monitor").cert, "utf8"),
      key: await readFile(pki.service("monitor").key, "utf8"),
    });
    const connected = new Promise((r) => sub.once("connect", r));
    const boot = await nextBoot(state);
    sub.on("message", (_t, payload) => {
      const r = JSON.parse(payload.toString("utf8")) as {
        sensor_id: string;
        seq: number;
        boot: number;
        ts: number;
      };
      if (r.boot !== boot) return;
      const now = performance.now();
      let s = seen.get(r.sensor_id);
      if (!s) seen.set(r.sensor_id, (s = { seqs: new Set(), lastAt: now }));
      s.seqs.add(r.seq);
      s.lastAt = now;
      latencies.push({ at: now, ms: Math.max(0, Date.now() - r.ts) });
    });
    await connected;
    await sub.subscribeAsync("electrolyser/+/telemetry", { qos: 1 });

    const report = join(state, "emulator-report.json");
    log(`${a.count} boards publishing for ${a.duration} s against ${url} …`);
    emulator = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(repoRoot(), "host/src/cli/emulate.ts"),
        "--count",
        String(a.count),
        "--rate",
        "1",
        "--duration",
        String(a.duration),
        "--broker",
        url,
        // The bench's own throw-away state folder holds the CA.
        "--mint-into-ca",
        state,
        "--key-type",
        keyType,
        "--boot",
        String(boot),
        "--no-verify",
        "--report",
        report,
      ],
      { env: { ...process.env, EST_STATE_DIR: state }, stdio: ["ignore", "ignore", "inherit"] },
    );
    const emulatorDone = new Promise<void>((r) => emulator!.once("exit", () => r()));
    const t0 = performance.now();
    // The two events and the storm after them need about 40 s of the run.
    const connectBudgetS = Math.max(10, a.duration - 60);
    while (seen.size < a.count && performance.now() - t0 < connectBudgetS * 1000) await sleep(100);
    if (seen.size < a.count)
      throw new Error(
        `only ${seen.size} of ${a.count} boards delivered within ${connectBudgetS} s (a busy machine? raise --duration)`,
      );
    const allIn = (performance.now() - t0) / 1000;
    await sleep(5000);

    // 1. The whole identity: cut off by the plugin, no restart.
    const k0 = performance.now();
    await revokeDevice(state, kicked, "keyCompromise");
    const kRevoked = performance.now();
    const kCut = await launcher.wait(
      new RegExp(`Client ${kicked} been disconnected by administrative action`),
      k0,
      15_000,
    );
    await sleep(10_000);

    // 2. One serial of an identity that keeps a valid certificate: a graceful restart onto the CRL.
    await rotateDevice({ stateDir: state, id: rotated });
    const r0 = performance.now();
    await revokeSerial(state, oldSerial, "superseded");
    const rDown = await launcher.wait(/restarting the broker to load the current CRL/, r0, 15_000);
    const rUp = await launcher.wait(/broker: restarted/, r0, 60_000);
    const others = ids.filter((id) => id !== kicked && id !== rotated);
    while (others.some((id) => (seen.get(id)?.lastAt ?? 0) < rUp) && performance.now() - rUp < 60_000)
      await sleep(50);
    const storm = (performance.now() - rUp) / 1000;
    const back = others.filter((id) => (seen.get(id)?.lastAt ?? 0) >= rUp).length;

    await emulatorDone;
    const s = JSON.parse(await readFile(report, "utf8")) as EmulatorSummary;
    const drainUntil = performance.now() + 20_000;
    const missing = (): number =>
      s.devices
        .filter((d) => d.id !== kicked && d.id !== rotated)
        .reduce((n, d) => {
          const got = seen.get(d.id)?.seqs;
          let m = 0;
          for (let q = 0; q < d.published; q++) if (!got?.has(q)) m++;
          return n + m;
        }, 0);
    while (missing() > 0 && performance.now() < drainUntil) await sleep(200);
    const lost = missing();
    const dropped = s.devices.reduce((n, d) => n + (d.id !== kicked && d.id !== rotated ? d.dropped : 0), 0);
    const inWindow = (from: number, to: number): number[] =>
      latencies
        .filter((l) => l.at >= from && l.at <= to)
        .map((l) => l.ms)
        .sort((x, y) => x - y);
    const kickWin = inWindow(k0, k0 + 10_000);
    const stormWin = inWindow(r0, rUp + storm * 1000 + 5000);
    const delayed = (w: number[]): number => w.filter((ms) => ms > a["delayed-ms"]).length;
    sub.end();

    const f = (n: number): string => n.toFixed(2);
    console.log(
      `\nrevocation with ${a.count} connected boards (${keyType}, 1 msg/s each, ${allIn.toFixed(1)} s until all delivered), Debian mosquitto via npm run broker; load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")} on ${availableParallelism()} cores`,
    );
    console.log(
      `identity revoked (plugin, no restart): pki revoke ${f((kRevoked - k0) / 1000)} s, board disconnected ${f((kCut - k0) / 1000)} s after the call; other boards in the next 10 s: e2e p50/p99/max ${percentile(kickWin, 0.5)}/${percentile(kickWin, 0.99)}/${kickWin.at(-1) ?? "-"} ms, ${delayed(kickWin)} readings over ${a["delayed-ms"]} ms`,
    );
    console.log(
      `serial revoked (graceful restart): restart began ${f((rDown - r0) / 1000)} s after the call, broker back ${f((rUp - r0) / 1000)} s after it; reconnect storm ${f(storm)} s until ${back}/${others.length} other boards delivered again; e2e p50/p99/max ${percentile(stormWin, 0.5)}/${percentile(stormWin, 0.99)}/${stormWin.at(-1) ?? "-"} ms, ${delayed(stormWin)} readings over ${a["delayed-ms"]} ms`,
    );
    console.log(
      `other boards over the whole run: ${s.devices.reduce((n, d) => n + (d.id !== kicked && d.id !== rotated ? d.published : 0), 0)} readings published, ${lost} lost, ${dropped} dropped by full outboxes`,
    );
  } finally {
    if (emulator && emulator.exitCode === null) emulator.kill("SIGTERM");
    if (broker && broker.exitCode === null) {
      const exited = new Promise((r) => broker!.once("exit", r));
      broker.kill("SIGTERM");
      await exited;
    }
    await rm(state, { recursive: true, force: true });
  }
}
