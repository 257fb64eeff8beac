/**
 * The host's half of a rotation with the key made on the board (host/src/trust/field-rotation.ts,
 * requestKeyInField and certifyInField), in process with the board's real TrustRotationHandler (node:crypto
 * KeyMaker, the emulator's) and a real PKI state: what the host publishes goes to the board's handler, the
 * board's answer back to the host. A good answer is certified and the certificate staged with the board's key;
 * an answer the board did not seal, or a CSR for another board, gets nothing issued.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ensureDevPki, type PkiPaths } from "../../../pki/src/index";
import {
  identityToEntries,
  PROV_NAMESPACE,
  type TlsIdentity,
} from "../../../firmware/src/identity/nvs-layout";
import { sealKeyAnswer } from "../../../firmware/src/identity/key-request-message";
import { TrustRotationHandler } from "../../../firmware/src/identity/trust-rotation";
import { keyAnswerTopic } from "../../../firmware/src/telemetry/topics";
import { MemoryPreference } from "../../../firmware/test/app/shims/memory-preference";
import { CapturingLog } from "../../../firmware/test/app/harness";
import { nodeAead } from "../../src/crypto/node-aead";
import { deriveDeviceKey, loadOrCreatePayloadMaster } from "../../src/crypto/device-keys";
import {
  boardSubject,
  certifyInField,
  readTrustFile,
  requestKeyInField,
  type KeyAnswerWatcher,
  type TrustPublisher,
} from "../../src/trust/field-rotation";
import { nodeKeyMaker } from "../../src/trust/node-key-maker";

const ID = "bk-0001";
const OTHER = "bk-0002";

let dir: string;
let paths: PkiPaths;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-board-key-certify-"));
  paths = await ensureDevPki({ stateDir: dir, devices: [ID, OTHER], services: ["fleet-admin"] });
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const der = (pem: string) => new Uint8Array(new X509Certificate(pem).raw);

/** The board: its provisioned identity in NVS and the firmware's handler over it. */
async function board() {
  const master = await loadOrCreatePayloadMaster(dir, 1);
  const payload = { keyId: 1, key: deriveDeviceKey(master, ID, 0) };
  const p = paths.device(ID);
  const base: TlsIdentity = {
    caDer: der(await readFile(paths.root, "utf8")),
    certDer: der(await readFile(p.cert, "utf8")),
    keyDer: new Uint8Array(await readFile(p.keyDer!)),
    brokerPins: [new Uint8Array(32).fill(1)],
  };
  const store = new MemoryPreference();
  store.load(
    PROV_NAMESPACE,
    identityToEntries({
      deviceId: ID,
      broker: "mqtts://localhost:8883",
      brokerHost: "localhost",
      port: 8883,
      intervalMs: 1000,
      tls: base,
      payload,
      wifi: null,
    }),
  );
  const handler = new TrustRotationHandler({
    store,
    aead: nodeAead,
    clock: { now: () => Date.now() },
    log: new CapturingLog(),
    deviceId: ID,
    payload,
    base,
    keys: nodeKeyMaker,
  });
  return { handler, payload, base };
}

/** A broker in process: what the host publishes on down/trust the board handles; its answers are retained. */
function wire(handler: TrustRotationHandler, o: { answer?: (real: Uint8Array) => Uint8Array } = {}) {
  const retained = new Map<string, Uint8Array>();
  const outcomes: string[] = [];
  const publisher: TrustPublisher = {
    publish: async (topic, payload, retain) => {
      if (retain) retained.set(topic, payload);
      const out = handler.handle(payload);
      outcomes.push(out.ok ? out.action : out.error);
      if (out.ok && out.action === "publish")
        retained.set(out.topic, o.answer ? o.answer(out.payload) : out.payload);
    },
  };
  const answers: KeyAnswerWatcher = {
    waitForKeyAnswer: async (id, accept) => {
      const got = retained.get(keyAnswerTopic(id));
      return got && accept(got) ? got : undefined;
    },
  };
  return { publisher, answers, outcomes };
}

describe("certifying a key made on the board", () => {
  it("certifies the board's CSR and the board stages the certificate with its own key", async () => {
    const b = await board();
    const w = wire(b.handler);
    const oldSerial = new X509Certificate(b.base.certDer).serialNumber.toLowerCase();
    const base = { stateDir: dir, id: ID, publisher: w.publisher };
    expect(await requestKeyInField(base)).toEqual({ rotation: 1 });
    const report = await certifyInField({ ...base, keyOnBoard: { answers: w.answers, timeoutMs: 100 } });
    expect(report).toMatchObject({ id: ID, ok: true, rotation: 1 });
    expect(w.outcomes).toEqual(["publish", "reconnect"]);
    const tried = b.handler.connection();
    expect(tried.trying).toBe(true);
    const cert = new X509Certificate(tried.tls.certDer);
    expect(cert.serialNumber.toLowerCase()).toBe(report.newSerial);
    expect(cert.subject).toBe("O=Electrolyser Secure Telemetry\nOU=devices\nCN=bk-0001");
    const boardKey = createPrivateKey({ key: Buffer.from(tried.tls.keyDer), format: "der", type: "pkcs8" });
    expect(cert.checkPrivateKey(boardKey)).toBe(true);
    // The PKI holds the certificate, and no key for it.
    expect(existsSync(paths.device(ID).key)).toBe(false);
    expect((await readTrustFile(dir)).devices[ID]!.pending).toMatchObject({
      rotation: 1,
      oldSerials: [oldSerial],
      keyOnBoard: true,
      newSerial: report.newSerial,
    });
    // Run again (a resend): the same certificate, already staged on the board; no new key, no new certificate.
    const again = await requestKeyInField(base);
    expect(again).toMatchObject({ report: { ok: true, newSerial: report.newSerial } });
    expect(w.outcomes.at(-1)).toBe("none");
  });

  it("issues nothing for an answer the board did not seal, or for a CSR naming another board", async () => {
    const b = await board();
    const before = await readFile(paths.device(ID).cert, "utf8");
    // A broker (or anyone) that swaps the answer for its own, sealed under a key it made up.
    const forged = wire(b.handler, {
      answer: () =>
        sealKeyAnswer(nodeAead, {
          key: new Uint8Array(32).fill(0x66),
          keyId: 1,
          sensorId: ID,
          topic: keyAnswerTopic(ID),
          answer: {
            rotation: 1,
            csrDer: new Uint8Array(nodeKeyMaker.generate({ subject: boardSubject(ID), bits: 2048 }).csrDer),
          },
        }),
    });
    const base = { stateDir: dir, id: ID, publisher: forged.publisher };
    await requestKeyInField(base);
    await expect(
      certifyInField({ ...base, keyOnBoard: { answers: forged.answers, timeoutMs: 100 } }),
    ).rejects.toThrow(
      /sent no CSR for rotation 1 .*it sent an answer that does not open \(tag_mismatch\).*nothing was issued/,
    );
    // Sealed by the board's key but for another board's name (what a board with a stolen payload key could try).
    const master = await loadOrCreatePayloadMaster(dir, 1);
    const wrongName = wire(b.handler, {
      answer: () =>
        sealKeyAnswer(nodeAead, {
          key: deriveDeviceKey(master, ID, 0),
          keyId: 1,
          sensorId: ID,
          topic: keyAnswerTopic(ID),
          answer: {
            rotation: 1,
            csrDer: new Uint8Array(
              nodeKeyMaker.generate({ subject: boardSubject(OTHER), bits: 2048 }).csrDer,
            ),
          },
        }),
    });
    await requestKeyInField({ ...base, publisher: wrongName.publisher });
    await expect(
      certifyInField({
        ...base,
        publisher: wrongName.publisher,
        keyOnBoard: { answers: wrongName.answers, timeoutMs: 100 },
      }),
    ).rejects.toMatchObject({ code: "bad_csr" });
    expect(await readFile(paths.device(ID).cert, "utf8")).toBe(before);
    expect((await readTrustFile(dir)).devices[ID]!.pending!.newSerial).toBeUndefined();
    expect(b.handler.connection().trying).toBe(false);
  });
});
