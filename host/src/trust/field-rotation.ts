/**
 * Rotating a board's certificate, key, broker pins and payload key over its downlink (`npm run trust`; README,
 * Trust).
 *
 *   rotate: issue a new certificate and key for the device (pki rotateDevice, the old one stays valid), grant
 *           it a new payload key generation (pending: the ingest accepts it at once), seal them with the broker
 *           pins under the board's current payload key (firmware/src/identity/trust-message.ts) and publish
 *           them as `fleet-admin` to electrolyser/<id>/down/trust, QoS 1, retained.
 *   finish: once the board connected with the new certificate, revoke the old one, clear the retained message,
 *           make the new payload key current and retire the old one (after a grace, see FinishOptions).
 *
 * Retained, because a board that is offline (or whose persistent session the broker dropped or never had)
 * gets it at its next subscription; QoS 1 alone would reach only a board whose session the broker still holds.
 * The price is that it is delivered again at every subscription until cleared: the board recognises the
 * rotation it already staged and does nothing (TrustRotationHandler, `already_staged`), and `finish` clears it.
 * The retained copy holds the new private key, sealed: the broker's disk never sees it in the clear.
 *
 * Nonce rule: the host seals with nonce (0x80000000 | rotation, 0), so it must never seal two different
 * messages under one (payload key, rotation). Rotation numbers are reserved in
 * <state>/provisioning/trust-rotations.json before anything is issued and only ever grow; a resend of a pending
 * rotation re-seals the same certificate and key (the same bytes), and is refused if the device's certificate
 * changed since (a `pki rotate` in between).
 *
 * With the key made on the board (`keyOnBoard`, README Trust), rotate runs in two steps under one rotation
 * number: a key request (nonce step 0) asks the board for a key pair and its CSR, which the board publishes
 * sealed under its payload key, retained, on electrolyser/<id>/csr; the host checks it (its own seal, the
 * device's subject, RSA-2048 or P-256, the self-signature), certifies the CSR's key (the PKI never sees the
 * private key) and sends the certificate alone (step 1) to the same retained topic, replacing the request.
 * An answer that does not come in time leaves the request pending: rotate again to resend it and wait.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  certifyDeviceKey,
  checkDeviceCsr,
  pkiPaths,
  provisionedBrokerPins,
  revokeSerial,
  rotateDevice,
  subjectFor,
  type KeyType,
} from "../../../pki/src/index";
import {
  sealCertificateForKey,
  sealKeyRequest,
  sealTrustMessage,
} from "../../../firmware/src/identity/trust-message";
import { openKeyAnswer } from "../../../firmware/src/identity/key-request-message";
import { downlinkTopic, keyAnswerTopic } from "../../../firmware/src/telemetry/topics";
import { nodeAead } from "../crypto/node-aead";
import { deriveDeviceKey, loadPayloadMaster } from "../crypto/device-keys";
import {
  DEFAULT_KEY_GRACE_MS,
  grantPending,
  promotePending,
  readGrants,
  updateGrants,
} from "../crypto/payload-grants";
import { writeFileAtomic } from "../../../shared/state-dir";

export interface PendingRotation {
  rotation: number;
  /** Certificates the board held before; revoked by `finish`. */
  oldSerials: string[];
  /** Set once the new certificate is issued. */
  newSerial?: string;
  /** The payload key id the message was last sealed under; -1 until published. */
  keyId: number;
  /** The new payload key the rotation carries (its grant is pending until finish); set once granted. */
  payloadKey?: { keyId: number; secretId: number; generation: number };
  /**
   * The broker pins (hex) the message was first sealed with: a resend re-seals the same bytes under the
   * same nonce, so it must not pick up pins changed since.
   */
  brokerPins?: string[];
  /** The key is made on the board: a key request was sent, and its answer (a CSR) is certified. */
  keyOnBoard?: boolean;
  publishedAt?: string;
}

export interface DeviceTrust {
  /** The highest rotation number ever reserved for the device: the next one is above it. */
  lastRotation: number;
  pending?: PendingRotation;
  finished: { rotation: number; serial: string; at: string }[];
}

export interface TrustFile {
  version: 1;
  devices: Record<string, DeviceTrust>;
}

/** Publishes to the broker as fleet-admin; resolves on PUBACK, rejects when the broker refused it. */
export interface TrustPublisher {
  publish(topic: string, payload: Uint8Array, retain: boolean): Promise<void>;
}

export type RotationStep =
  | "reserved"
  | "requested"
  | "answered"
  | "issued"
  | "published"
  | "resent"
  | "waiting"
  | "seen"
  | "revoked"
  | "cleared"
  | "keyed";

/** A board's retained status (firmware/src/app/status-message.ts): `cert` is the serial it connected with. */
export interface BoardStatus {
  online?: boolean;
  cert?: string;
}

/** Reads boards' status as fleet-admin; resolves with the first accepted one, or undefined after the timeout. */
export interface StatusWatcher {
  waitForStatus(
    id: string,
    accept: (s: BoardStatus) => boolean,
    timeoutMs: number,
  ): Promise<BoardStatus | undefined>;
}

/** Reads boards' answers to key requests as fleet-admin: the first accepted payload, or undefined after the timeout. */
export interface KeyAnswerWatcher {
  waitForKeyAnswer(
    id: string,
    accept: (payload: Uint8Array) => boolean,
    timeoutMs: number,
  ): Promise<Uint8Array | undefined>;
}

export interface RotationReport {
  id: string;
  ok: boolean;
  rotation?: number;
  newSerial?: string;
  revoked?: string[];
  /** The payload key id the board seals under after the rotation. */
  payloadKeyId?: number;
  error?: string;
}

export function trustFilePath(stateDir: string): string {
  return join(stateDir, "provisioning", "trust-rotations.json");
}

export async function readTrustFile(stateDir: string): Promise<TrustFile> {
  const path = trustFilePath(stateDir);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, devices: {} };
    throw err;
  }
  const f = JSON.parse(text) as Partial<TrustFile>;
  if (f.version !== 1 || typeof f.devices !== "object" || f.devices === null)
    throw new Error(`${path} is not a version 1 trust rotation file`);
  return { version: 1, devices: f.devices };
}

async function updateDevice(
  stateDir: string,
  id: string,
  change: (d: DeviceTrust) => DeviceTrust,
): Promise<DeviceTrust> {
  const file = await readTrustFile(stateDir);
  const next = change(file.devices[id] ?? { lastRotation: 0, finished: [] });
  file.devices[id] = next;
  await writeFileAtomic(trustFilePath(stateDir), `${JSON.stringify(file, null, 2)}\n`, 0o644);
  return next;
}

/** The board's current payload key: its `current` grant, else (boards provisioned before grants) key id 1, generation 0. */
async function boardPayloadKey(
  stateDir: string,
  id: string,
  fallbackKeyId: number,
): Promise<{ keyId: number; key: Uint8Array }> {
  const grants = (await readGrants(stateDir)).devices[id]?.grants ?? [];
  const current = grants.find((g) => g.state === "current");
  const secretId = current?.secretId ?? fallbackKeyId;
  const master = await loadPayloadMaster(stateDir, secretId);
  return {
    keyId: current?.keyId ?? fallbackKeyId,
    key: deriveDeviceKey(master, id, current?.generation ?? 0),
  };
}

async function deviceCert(
  stateDir: string,
  id: string,
): Promise<{ serial: string; der: Uint8Array; keyDer?: Uint8Array }> {
  const p = pkiPaths(stateDir).device(id);
  let pem: string;
  try {
    pem = await readFile(p.cert, "utf8");
  } catch {
    throw new Error(
      `unknown device "${id}" (no certificate at ${p.cert}); issue it with npm run pki -- devices`,
    );
  }
  const cert = new X509Certificate(pem);
  // Absent once the device's key was made on the board (certified from its CSR).
  const keyDer = p.keyDer
    ? await readFile(p.keyDer).then(
        (b) => new Uint8Array(b),
        (err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT") return undefined;
          throw err;
        },
      )
    : undefined;
  return {
    serial: cert.serialNumber.toLowerCase(),
    der: new Uint8Array(cert.raw),
    ...(keyDer ? { keyDer } : {}),
  };
}

/** The pins a pending rotation was first sealed with, or the provisioned ones (recorded by the caller). */
async function pinsFor(stateDir: string, pending: PendingRotation): Promise<Uint8Array[]> {
  if (pending.brokerPins) return pending.brokerPins.map((h) => new Uint8Array(Buffer.from(h, "hex")));
  return provisionedBrokerPins(stateDir);
}

const hexPins = (pins: readonly Uint8Array[]): string[] => pins.map((p) => Buffer.from(p).toString("hex"));

export interface RotateOptions {
  stateDir: string;
  id: string;
  publisher: TrustPublisher;
  keyType?: KeyType;
  days?: number;
  /** Key id of the fleet secret for a board without payload grants (provisioned before them). */
  fallbackKeyId?: number;
  onStep?: (step: RotationStep, detail: string) => void;
  /** Make the key on the board: send a key request, wait for its CSR this long, certify it. */
  keyOnBoard?: { answers: KeyAnswerWatcher; timeoutMs: number };
}

/**
 * One board: a pending rotation is resent as it was; otherwise a new one is reserved, issued and published.
 * Throws with a specific message on failure; what was done so far is in the trust file.
 */
export async function rotateInField(o: RotateOptions): Promise<RotationReport> {
  if (o.keyOnBoard) {
    const requested = await requestKeyInField(o);
    if ("report" in requested) return requested.report;
    return certifyInField({ ...o, keyOnBoard: o.keyOnBoard });
  }
  const step = o.onStep ?? (() => {});
  let record = (await readTrustFile(o.stateDir)).devices[o.id];
  let pending = record?.pending;
  const before = await deviceCert(o.stateDir, o.id);
  const resend = pending?.newSerial !== undefined;
  if (pending?.newSerial !== undefined && pending.newSerial !== before.serial)
    throw new Error(
      `device "${o.id}": rotation ${pending.rotation} was issued as certificate ${pending.newSerial}, but the device now has ${before.serial} (rotated by hand?); run finish or re-provision it`,
    );
  if (!resend) {
    // Reserve first: a rotation number, once used in a nonce, is never used again whatever fails next.
    const carried = pending?.oldSerials ?? [];
    record = await updateDevice(o.stateDir, o.id, (d) => ({
      ...d,
      lastRotation: d.lastRotation + 1,
      pending: {
        rotation: d.lastRotation + 1,
        oldSerials: [...new Set([...carried, before.serial])],
        keyId: -1,
      },
    }));
    pending = record.pending!;
    step("reserved", `rotation ${pending.rotation}`);
    const issued = await rotateDevice({ stateDir: o.stateDir, id: o.id, keyType: o.keyType, days: o.days });
    const serial = issued.serial.toLowerCase();
    record = await updateDevice(o.stateDir, o.id, (d) => ({
      ...d,
      pending: { ...d.pending!, newSerial: serial },
    }));
    pending = record.pending!;
    step("issued", `certificate ${serial} (the old one, ${before.serial}, stays valid until finish)`);
  }
  const cert = await deviceCert(o.stateDir, o.id);
  if (pending!.keyOnBoard)
    throw new Error(
      `device "${o.id}": rotation ${pending!.rotation} asked the board for its own key; run rotate without --no-key-on-board to go on`,
    );
  const keyDer = cert.keyDer;
  if (!keyDer)
    throw new Error(
      `device "${o.id}": its key was made on the board, the PKI holds none to send; rotate without --no-key-on-board`,
    );
  return publishRotation(o, pending!, resend, cert.serial, "", (c) =>
    sealTrustMessage(nodeAead, {
      ...c.seal,
      rotation: {
        rotation: c.pending.rotation,
        certDer: cert.der,
        keyDer,
        brokerPins: c.pins,
        payloadKey: c.payloadKey,
      },
    }),
  );
}

interface SealContent {
  /** The board's current payload key, its key id, the device id and topic: what the message is sealed under. */
  seal: { key: Uint8Array; keyId: number; sensorId: string; topic: string };
  pending: PendingRotation;
  /** The pins the rotation was first sealed with. */
  pins: Uint8Array[];
  /** The payload key the board seals with after the rotation. */
  payloadKey: { keyId: number; key: Uint8Array };
}

/**
 * What both paths share once the certificate is issued: the new payload key granted (pending) once, the pins
 * fixed once, both kept in the trust file so a resend seals the same bytes; then sealed under the board's
 * current payload key and published QoS 1 retained on its down/trust.
 */
async function publishRotation(
  o: RotateOptions,
  start: PendingRotation,
  resend: boolean,
  serial: string,
  what: string,
  seal: (c: SealContent) => Uint8Array,
): Promise<RotationReport> {
  const step = o.onStep ?? (() => {});
  const fallbackKeyId = o.fallbackKeyId ?? 1;
  let pending = start;
  if (!pending.payloadKey) {
    // Reserved and granted (pending) before it is sealed: a generation is never handed out twice, and the
    // ingest knows the key before the board can seal under it. A resend carries the same generation.
    const grant = await updateGrants(o.stateDir, (f) => {
      const r = grantPending(f, o.id, { now: new Date(), legacyKeyId: fallbackKeyId });
      return { file: r.file, result: r.grant };
    });
    const payloadKey = { keyId: grant.keyId, secretId: grant.secretId, generation: grant.generation };
    pending = (
      await updateDevice(o.stateDir, o.id, (d) => ({ ...d, pending: { ...d.pending!, payloadKey } }))
    ).pending!;
    step("issued", `payload key ${grant.keyId} (generation ${grant.generation}), pending until finish`);
  }
  const pins = await pinsFor(o.stateDir, pending);
  if (!pending.brokerPins)
    pending = (
      await updateDevice(o.stateDir, o.id, (d) => ({
        ...d,
        pending: { ...d.pending!, brokerPins: hexPins(pins) },
      }))
    ).pending!;
  const next = pending.payloadKey!;
  const newKey = deriveDeviceKey(await loadPayloadMaster(o.stateDir, next.secretId), o.id, next.generation);
  // A resend under another payload key (the board re-provisioned meanwhile) is still nonce-safe: another key.
  const payload = await boardPayloadKey(o.stateDir, o.id, fallbackKeyId);
  const topic = downlinkTopic(o.id, "trust");
  const message = seal({
    seal: { key: payload.key, keyId: payload.keyId, sensorId: o.id, topic },
    pending,
    pins,
    payloadKey: { keyId: next.keyId, key: newKey },
  });
  await o.publisher.publish(topic, message, true);
  await updateDevice(o.stateDir, o.id, (d) => ({
    ...d,
    pending: { ...d.pending!, keyId: payload.keyId, publishedAt: new Date().toISOString() },
  }));
  step(resend ? "resent" : "published", `${what}${topic}, ${message.length} bytes, QoS 1, retained`);
  return { id: o.id, ok: true, rotation: pending.rotation, newSerial: serial, payloadKeyId: next.keyId };
}

/** The subject the PKI issues devices under, as the board's KeyMaker takes it (mbedTLS: first pair first, no spaces). */
export function boardSubject(id: string): string {
  return subjectFor("device", id, ",");
}

const KEY_BITS = 2048;

/**
 * Step one with the key on the board: reserve a rotation (or take the pending one) and publish its key request,
 * QoS 1 retained. A rotation already certified is resent instead (the certificate again) and reported.
 */
export async function requestKeyInField(
  o: RotateOptions,
): Promise<{ rotation: number } | { report: RotationReport }> {
  const step = o.onStep ?? (() => {});
  const fallbackKeyId = o.fallbackKeyId ?? 1;
  let pending = (await readTrustFile(o.stateDir)).devices[o.id]?.pending;
  const before = await deviceCert(o.stateDir, o.id);
  if (pending?.newSerial !== undefined) {
    if (!pending.keyOnBoard)
      throw new Error(
        `device "${o.id}": rotation ${pending.rotation} sends a host-made key; resend it with --no-key-on-board, or finish it`,
      );
    return { report: await sendCertificate(o, pending, true) };
  }
  if (!pending?.keyOnBoard) {
    const carried = pending?.oldSerials ?? [];
    pending = (
      await updateDevice(o.stateDir, o.id, (d) => ({
        ...d,
        lastRotation: d.lastRotation + 1,
        pending: {
          rotation: d.lastRotation + 1,
          oldSerials: [...new Set([...carried, before.serial])],
          keyId: -1,
          keyOnBoard: true,
        },
      }))
    ).pending!;
    step("reserved", `rotation ${pending.rotation}, the key to be made on the board`);
  }
  const payload = await boardPayloadKey(o.stateDir, o.id, fallbackKeyId);
  const topic = downlinkTopic(o.id, "trust");
  // The same request every time (rotation, bits, subject): resending it re-seals the same bytes.
  const message = sealKeyRequest(nodeAead, {
    key: payload.key,
    keyId: payload.keyId,
    sensorId: o.id,
    topic,
    request: { rotation: pending.rotation, bits: KEY_BITS, subject: boardSubject(o.id) },
  });
  await o.publisher.publish(topic, message, true);
  await updateDevice(o.stateDir, o.id, (d) => ({ ...d, pending: { ...d.pending!, keyId: payload.keyId } }));
  step("requested", `RSA-${KEY_BITS} key and CSR for rotation ${pending.rotation} on ${topic} (retained)`);
  return { rotation: pending.rotation };
}

/**
 * Step two: wait for the board's CSR, check it, certify its key and send the certificate alone. The CSR is
 * sealed under the board's payload key: one a compromised broker made for a key of its own does not open.
 */
export async function certifyInField(
  o: RotateOptions & { keyOnBoard: NonNullable<RotateOptions["keyOnBoard"]> },
): Promise<RotationReport> {
  const step = o.onStep ?? (() => {});
  const pending = (await readTrustFile(o.stateDir)).devices[o.id]?.pending;
  if (!pending?.keyOnBoard) throw new Error(`device "${o.id}" has no key request pending`);
  if (pending.newSerial !== undefined) return sendCertificate(o, pending, true);
  const payload = await boardPayloadKey(o.stateDir, o.id, o.fallbackKeyId ?? 1);
  const topic = keyAnswerTopic(o.id);
  let refused = "";
  const open = (bytes: Uint8Array) =>
    openKeyAnswer(nodeAead, { key: payload.key, keyId: payload.keyId, sensorId: o.id, topic, bytes });
  const answer = await o.keyOnBoard.answers.waitForKeyAnswer(
    o.id,
    (bytes) => {
      const r = open(bytes);
      if (r.ok && r.value.rotation === pending.rotation) return true;
      // An answer to an earlier request (retained until finish) is expected; anything else is reported.
      refused = r.ok
        ? `an answer to rotation ${r.value.rotation}`
        : `an answer that does not open (${r.error})`;
      return false;
    },
    o.keyOnBoard.timeoutMs,
  );
  if (!answer)
    throw new Error(
      `device "${o.id}" sent no CSR for rotation ${pending.rotation} within ${Math.round(o.keyOnBoard.timeoutMs / 1000)} s` +
        `${refused ? ` (it sent ${refused})` : " (offline? the request is retained: run rotate again later)"}; nothing was issued`,
    );
  const opened = open(answer);
  if (!opened.ok) throw new Error(`device "${o.id}": its answer stopped opening (${opened.error})`);
  const { spki, keyType } = await checkDeviceCsr(opened.value.csrDer, o.id);
  step("answered", `CSR for rotation ${pending.rotation} (${keyType}, self-signature and subject checked)`);
  const issued = await certifyDeviceKey({ stateDir: o.stateDir, id: o.id, spki, keyType, days: o.days });
  const serial = issued.serial.toLowerCase();
  const updated = (
    await updateDevice(o.stateDir, o.id, (d) => ({ ...d, pending: { ...d.pending!, newSerial: serial } }))
  ).pending!;
  step("issued", `certificate ${serial} for the board's own key (the old one stays valid until finish)`);
  return sendCertificate(o, updated, false);
}

/** Publishes the certificate for the board's key (with the pins and the new payload key), QoS 1 retained. */
async function sendCertificate(
  o: RotateOptions,
  pending: PendingRotation,
  resend: boolean,
): Promise<RotationReport> {
  const cert = await deviceCert(o.stateDir, o.id);
  if (cert.serial !== pending.newSerial)
    throw new Error(
      `device "${o.id}": rotation ${pending.rotation} was issued as certificate ${pending.newSerial}, but the device now has ${cert.serial} (rotated by hand?); run finish or re-provision it`,
    );
  return publishRotation(o, pending, resend, cert.serial, "the certificate alone on ", (c) =>
    sealCertificateForKey(nodeAead, {
      ...c.seal,
      certificate: {
        rotation: c.pending.rotation,
        certDer: cert.der,
        brokerPins: c.pins,
        payloadKey: c.payloadKey,
      },
    }),
  );
}

export interface FinishOptions {
  stateDir: string;
  id: string;
  publisher: TrustPublisher;
  /** First wait this long for the board's status to name the new certificate; fail if it does not. */
  wait?: { watcher: StatusWatcher; timeoutMs: number };
  /**
   * How long the payload key the rotation replaced still opens readings (default DEFAULT_KEY_GRACE_MS, 7 days,
   * as for a re-provisioned board); 0 retires it at once. Readings the board sealed under it before it
   * switched (at the CONNACK with its new identity) may still be on their way: in its outbox if it went
   * offline again, or queued at the broker for an ingest that is down.
   */
  keyGraceMs?: number;
  onStep?: (step: RotationStep, detail: string) => void;
}

/** Once the board connected with its new certificate: clear the retained message, revoke the old serials. */
export async function finishInField(o: FinishOptions): Promise<RotationReport> {
  const step = o.onStep ?? (() => {});
  const pending = (await readTrustFile(o.stateDir)).devices[o.id]?.pending;
  if (!pending?.newSerial || !pending.publishedAt)
    throw new Error(`device "${o.id}" has no published rotation to finish (npm run trust -- status)`);
  if (o.wait) {
    const serial = pending.newSerial;
    step(
      "waiting",
      `up to ${Math.round(o.wait.timeoutMs / 1000)} s for the board's status to show certificate ${serial}`,
    );
    const seen = await o.wait.watcher.waitForStatus(
      o.id,
      (s) => s.online === true && s.cert === serial,
      o.wait.timeoutMs,
    );
    if (!seen)
      throw new Error(
        `device "${o.id}" did not report certificate ${serial} within ${Math.round(o.wait.timeoutMs / 1000)} s (offline, or it refused the rotation: see its console); nothing was revoked`,
      );
    step("seen", `the board is online with certificate ${serial}`);
  }
  const topic = downlinkTopic(o.id, "trust");
  // An empty retained message deletes the retained one (MQTT 3.1.1 §3.3.1.3); the board ignores it.
  await o.publisher.publish(topic, new Uint8Array(0), true);
  step("cleared", topic);
  if (pending.keyOnBoard) {
    // The board's retained CSR: public, but nothing to keep on the broker once certified.
    await o.publisher.publish(keyAnswerTopic(o.id), new Uint8Array(0), true);
    step("cleared", keyAnswerTopic(o.id));
  }
  const revoked: string[] = [];
  // Idempotent: a serial already revoked (by `pki revoke`, or a finish that stopped half-way) keeps its record.
  for (const serial of pending.oldSerials) {
    await revokeSerial(o.stateDir, serial, "superseded");
    revoked.push(serial);
  }
  step("revoked", revoked.join(", "));
  const newKey = pending.payloadKey;
  if (newKey) {
    const graceMs = o.keyGraceMs ?? DEFAULT_KEY_GRACE_MS;
    await updateGrants(o.stateDir, (f) => ({
      file: promotePending(f, o.id, { generation: newKey.generation, now: new Date(), graceMs }),
      result: undefined,
    }));
    step(
      "keyed",
      `payload key ${newKey.keyId} current; the one it replaced ${graceMs > 0 ? `opens until ${new Date(Date.now() + graceMs).toISOString()}` : "is retired"}`,
    );
  }
  await updateDevice(o.stateDir, o.id, (d) => ({
    lastRotation: d.lastRotation,
    finished: [
      ...d.finished,
      { rotation: pending.rotation, serial: pending.newSerial!, at: new Date().toISOString() },
    ],
  }));
  return {
    id: o.id,
    ok: true,
    rotation: pending.rotation,
    newSerial: pending.newSerial,
    revoked,
    ...(newKey ? { payloadKeyId: newKey.keyId } : {}),
  };
}
