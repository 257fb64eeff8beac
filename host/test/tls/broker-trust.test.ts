// The board's broker check (firmware/src/tls/broker-trust, over node:crypto as the emulator runs it)
// against the chains of the rogue brokers that got readings from the firmware on Moddable's simulator,
// against the real broker, and across a broker key rotation.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { splitPins } from "../../../firmware/src/tls/broker-trust";
import { parseCertificate } from "../../../firmware/src/tls/certificate";
import { ensureDevPki, provisionedBrokerPins, rotateBrokerKey, spkiPin } from "../../../pki/src/index";
import { nodeBrokerTrust } from "../../src/tls/node-broker-trust";
import { forgeChains } from "./forged-chains";
import type { ForgedChains } from "./forged-chains";

const HOSTS = ["broker.plant.example", "127.0.0.1"];
let dir: string;
let chains: ForgedChains;
let pins: Uint8Array[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-broker-trust-"));
  await ensureDevPki({ stateDir: dir, devices: ["elx-captured"], brokerHosts: HOSTS });
  pins = await provisionedBrokerPins(dir);
  chains = await forgeChains(dir, "elx-captured", HOSTS);
}, 120_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the board's broker check", () => {
  it("accepts the real broker with the provisioned pins (current and next)", () => {
    expect(pins).toHaveLength(2);
    const v = nodeBrokerTrust({ pins, anchor: chains.anchor }).check(chains.real.chain, Date.now());
    expect(v).toEqual({ ok: true, pinIndex: 0 });
  });

  it("accepts the real broker when it sends the root along too", () => {
    const v = nodeBrokerTrust({ pins, anchor: chains.anchor }).check(
      [...chains.real.chain, chains.anchor],
      Date.now(),
    );
    expect(v.ok).toBe(true);
  });

  it.each(["attackerSigned", "deviceSigned", "selfSigned", "misIssued"] as const)(
    "refuses the %s chain on its key pin",
    (which) => {
      const v = nodeBrokerTrust({ pins, anchor: chains.anchor }).check(chains[which].chain, Date.now());
      expect(v).toMatchObject({ ok: false, reason: "pin_mismatch" });
    },
  );

  // Were the attacker's key pinned (a mis-provisioned board), the chain rules alone still refuse each
  // forgery, where Moddable's own verifier accepted the first two.
  it.each([
    ["attackerSigned", "bad_signature"],
    ["deviceSigned", "issuer_not_ca"],
    ["selfSigned", "untrusted_root"],
  ] as const)("refuses the %s chain on its chain even with its key pinned (%s)", (which, reason) => {
    const chain = chains[which].chain;
    const leafPin = spkiPin(parseCertificate(chain[0]!).spki);
    const v = nodeBrokerTrust({ pins: [leafPin], anchor: chains.anchor }).check(chain, Date.now());
    expect(v).toMatchObject({ ok: false, reason });
  });

  it("refuses the real broker with a wrong pin", () => {
    const v = nodeBrokerTrust({ pins: [new Uint8Array(32).fill(0xab)], anchor: chains.anchor }).check(
      chains.real.chain,
      Date.now(),
    );
    expect(v).toMatchObject({ ok: false, reason: "pin_mismatch" });
  });

  it("refuses the real broker's chain once its certificate has expired, and an empty or garbage chain", () => {
    const trust = nodeBrokerTrust({ pins, anchor: chains.anchor });
    const leaf = parseCertificate(chains.real.chain[0]!);
    expect(trust.check(chains.real.chain, leaf.notAfter + 1000)).toMatchObject({
      ok: false,
      reason: "expired",
    });
    expect(trust.check([], Date.now())).toMatchObject({ ok: false, reason: "no_certificate" });
    expect(trust.check([new Uint8Array([0x30, 0x82, 0xff, 0xff, 1])], Date.now())).toMatchObject({
      ok: false,
      reason: "malformed",
    });
  });

  it("accepts the broker's rotated key with the pins provisioned before the rotation", async () => {
    const before = pins;
    const rotated = await rotateBrokerKey({ stateDir: dir });
    const after = await forgeChains(dir, "elx-captured", HOSTS);
    expect(Buffer.from(after.real.chain[0]!).equals(Buffer.from(chains.real.chain[0]!))).toBe(false);
    const v = nodeBrokerTrust({ pins: before, anchor: chains.anchor }).check(after.real.chain, Date.now());
    expect(v).toEqual({ ok: true, pinIndex: 1 });
    // A board provisioned with only the old current pin (before next keys existed) refuses it.
    const onlyOld = nodeBrokerTrust({ pins: [before[0]!], anchor: chains.anchor }).check(
      after.real.chain,
      Date.now(),
    );
    expect(onlyOld).toMatchObject({ ok: false, reason: "pin_mismatch" });
    expect(rotated.pins.current).toEqual(before[1]);
    expect(rotated.pins.next).toBeDefined();
    expect(rotated.pins.next).not.toEqual(before[1]);
  });

  it("splits the NVS pin blob and refuses one of the wrong length", () => {
    const blob = new Uint8Array(64).map((_, i) => i);
    expect(splitPins(blob)!.map((p) => p[0])).toEqual([0, 32]);
    expect(splitPins(new Uint8Array(31))).toBeNull();
    expect(splitPins(new Uint8Array(0))).toBeNull();
  });
});
