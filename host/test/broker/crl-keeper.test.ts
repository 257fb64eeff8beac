/**
 * The CRL keeper of a running broker (no mosquitto here: restarts are recorded): it re-signs the CRL
 * before it lapses and moves the broker onto it once, and hands new revocations over or restarts.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ensureDevPki, refreshCrlIfDue, type PkiPaths } from "../../../pki/src/index";
import { revokeDevice } from "../../../pki/src/identities";
import { CrlKeeper } from "../../src/broker/crl-keeper";
import { viewCrl } from "../../src/broker/crl-view";

const DAY = 86_400_000;
let dir: string;
let paths: PkiPaths;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-crl-keeper-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: ["dev-k1", "dev-k2"],
    services: [],
    deviceKeyType: "p256",
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it("re-signs a CRL with a third of its life left and restarts the broker onto it once", async () => {
  const loaded = viewCrl(await readFile(paths.crl, "utf8"));
  let now = new Date(Date.now() + 30 * DAY);
  const restarts: string[] = [];
  const logs: string[] = [];
  const keeper = new CrlKeeper(loaded, {
    crlPath: paths.crl,
    resignIfDue: (at) => refreshCrlIfDue(dir, at),
    restart: async (why) => void restarts.push(why),
    log: (l) => void logs.push(l),
    resignEveryMs: 0,
    now: () => now,
  });

  await keeper.tick();
  expect(restarts).toEqual([]);
  expect(await readFile(paths.crl, "utf8")).toBe(loaded.text);

  now = new Date(Date.now() + 61 * DAY);
  await keeper.tick();
  const resigned = viewCrl(await readFile(paths.crl, "utf8"));
  expect(resigned.nextUpdate.getTime()).toBeGreaterThan(now.getTime() + 89 * DAY);
  expect(restarts).toEqual(["the loaded CRL is due for renewal"]);
  expect(keeper.loaded.text).toBe(resigned.text);

  await keeper.tick();
  expect(restarts).toHaveLength(1);
  expect(keeper.failures).toBe(0);
});

it("a new revocation restarts the broker unless a handler cut the board off", async () => {
  let handled: string[] = [];
  let restartNeeded = false;
  const restarts: string[] = [];
  const keeper = new CrlKeeper(viewCrl(await readFile(paths.crl, "utf8")), {
    crlPath: paths.crl,
    restart: async (why) => void restarts.push(why),
    onNewRevocations: async (serials) => {
      handled = serials;
      return { restartNeeded };
    },
    log: () => undefined,
  });
  await revokeDevice(dir, "dev-k1");
  await keeper.tick();
  expect(handled).toHaveLength(1);
  expect(restarts).toEqual([]);

  restartNeeded = true;
  await revokeDevice(dir, "dev-k2");
  await keeper.tick();
  expect(handled).toHaveLength(2);
  expect(restarts).toEqual(["2 newly revoked certificate(s)"]);
});

it("an unreadable CRL file is reported and the broker keeps what it has", async () => {
  const crl = join(dir, "broken-crl.pem");
  const good = await readFile(paths.crl, "utf8");
  await writeFile(crl, good);
  const restarts: string[] = [];
  const logs: string[] = [];
  const keeper = new CrlKeeper(viewCrl(good), {
    crlPath: crl,
    restart: async (why) => void restarts.push(why),
    log: (l) => void logs.push(l),
  });
  await writeFile(crl, "not a CRL\n");
  await keeper.tick();
  expect(keeper.failures).toBe(1);
  expect(logs.join("\n")).toMatch(/no X509 CRL block; the broker keeps the CRL it has/);
  expect(restarts).toEqual([]);
});
