/**
 * The emulator's verifying subscriber must keep counting across broker restarts, a clean one and a SIGKILL,
 * so that its loss figure is what the broker really lost (issue 15: it stopped receiving after the first
 * restart and reported ten times the true loss). Real Mosquitto, restarted by PID.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { encodeTelemetryMessage } from "../../../firmware/src/payload/telemetry-message";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { Verifier } from "../../src/emulator/verifier";
import {
  createBrokerTestPki,
  issue,
  writePem,
  type BrokerTestPki,
  type IssuedCert,
} from "../broker/helpers/test-pki";
import { endClient, mustConnect, publishQos1, sleep } from "../broker/helpers/clients";

const BOOT = 3;
const DEVICE = "dev-verify";
let dir: string;
let pki: BrokerTestPki;
let broker: MosquittoHandle;
let dev: IssuedCert;
let verifier: Verifier | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-verifier-restart-"));
  pki = await createBrokerTestPki(dir);
  dev = await issue(pki.ca, { cn: DEVICE, kind: "p256", usage: "client" });
  broker = await startMosquitto({ pki: pki.paths, dataDir: join(dir, "data") });
});

afterAll(async () => {
  verifier?.stop();
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function publishReadings(from: number, to: number): Promise<void> {
  const board = await mustConnect({ url: broker.url, ca: pki.ca.certPem, identity: dev, clientId: DEVICE });
  for (let seq = from; seq < to; seq++) {
    const { topic, payload } = encodeTelemetryMessage(
      {
        sensorId: DEVICE,
        seq,
        ts: Date.now(),
        boot: BOOT,
        fw: "test",
        values: {
          temperature_c: 60,
          pressure_bar: 30,
          h2_flow_sccm: 1000,
          purity_pct: 99.99,
          voltage_v: 80,
          current_a: 100,
        },
        faults: [],
      },
      { kind: "plain" },
    );
    expect((await publishQos1(board, topic, Buffer.from(payload).toString("utf8"))).reasonCode).toBe(0);
  }
  await endClient(board);
}

async function untilVerifierHas(n: number): Promise<void> {
  // A deadline for a clear message, not a timing assertion: the broker delivers in milliseconds. Short enough
  // that a hang names its phase before the test's own 60 s timeout (this test hung once in a full CI run).
  const deadline = Date.now() + 15_000;
  while ((verifier?.unique ?? 0) < n) {
    if (Date.now() > deadline)
      throw new Error(
        `the verifier has ${verifier?.unique ?? 0} of ${n} readings (reconnects ${verifier?.reconnects ?? 0})`,
      );
    await sleep(50);
  }
}

it("keeps receiving after a clean broker restart and after a SIGKILL, through its persistent session", async () => {
  const monitor = await issue(pki.ca, { cn: "monitor", kind: "p256", usage: "client" });
  verifier = new Verifier({
    host: broker.host,
    port: broker.port,
    caFile: pki.paths.caBundle,
    certFile: await writePem(dir, "monitor.crt.pem", monitor.certPem),
    keyFile: await writePem(dir, "monitor.key.pem", monitor.keyPem, 0o600),
    clientId: "monitor",
    expectedBoot: BOOT,
    decode: { kind: "plain" },
  });
  await verifier.start();

  await publishReadings(0, 20);
  await untilVerifierHas(20);

  await broker.restart(); // clean: Mosquitto saves the verifier's session and its subscriptions
  await publishReadings(20, 40); // queued for the session while the verifier is still reconnecting
  await untilVerifierHas(40);

  const pid = broker.pid;
  process.kill(pid, "SIGKILL");
  await broker.exited();
  await broker.restart(); // back from the last save, which holds the session
  await publishReadings(40, 60);
  await untilVerifierHas(60);

  const tally = verifier.tallies.get(DEVICE)!;
  expect(tally.missingBelow(60)).toBe(0);
  // Queued messages can arrive before the SUBACK that completes the reconnect (and counts it).
  const deadline = Date.now() + 15_000;
  while (verifier.reconnects < 2) {
    if (Date.now() > deadline)
      throw new Error(
        `all 60 readings arrived but the verifier counted ${verifier.reconnects} of 2 reconnects`,
      );
    await sleep(50);
  }
});
