/**
 * A CRL that never lapses: `npm run broker` started 100 days after setup (libfaketime's clock offset on
 * the launcher and its mosquitto) still admits a valid board, because the launcher re-signs the CRL
 * before mosquitto reads it. Without that, the 90-day CRL has lapsed and OpenSSL refuses every client.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ensureDevPki, type PkiPaths } from "../../../pki/src/index";
import { viewCrl } from "../../src/broker/crl-view";
import { startBrokerCli, type BrokerCli } from "./helpers/broker-cli";
import { endClient, publishQos1, tryConnect } from "./helpers/clients";

const DAY = 86_400_000;
let dir: string;
let paths: PkiPaths;
let broker: BrokerCli | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-crl-lapse-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: ["dev-lapse"],
    services: ["ingest"],
    deviceKeyType: "p256",
  });
});

afterAll(async () => {
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

it("a broker started 100 days after setup admits a valid board", async () => {
  const before = viewCrl(await readFile(paths.crl, "utf8"));
  broker = await startBrokerCli({ stateDir: dir, dataDir: join(dir, "data"), fakeDays: 100 });
  const url = broker.url;

  const identity = {
    certPem: await readFile(paths.device("dev-lapse").cert, "utf8"),
    keyPem: await readFile(paths.device("dev-lapse").key, "utf8"),
  };
  const r = await tryConnect({
    url,
    ca: await readFile(paths.root, "utf8"),
    identity,
    clientId: "dev-lapse",
  });
  expect(r.ok ? "connected" : r.error).toBe("connected");
  if (!r.ok) return;
  expect((await publishQos1(r.client, "electrolyser/dev-lapse/telemetry", "after-100-days")).reasonCode).toBe(
    0,
  );
  await endClient(r.client);

  const after = viewCrl(await readFile(paths.crl, "utf8"));
  // Re-signed on the broker's (shifted) clock, good for the 90 days after that.
  expect(after.thisUpdate.getTime()).toBeGreaterThan(before.thisUpdate.getTime() + 99 * DAY);
  expect(after.nextUpdate.getTime()).toBeGreaterThan(before.nextUpdate.getTime());
});
