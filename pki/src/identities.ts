import { basename, join } from "node:path";
import { createPublicKey } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { x509 } from "./x509";
import { deviceIdProblem } from "../../manifests/src/device-id";
import { SERVICE_IDENTITIES } from "../../firmware/src/telemetry/vocabulary";
import { PkiError, ioError } from "./errors";
import { loadCa, record, signedByIssuing, writeCrl, type LoadedCa } from "./ca";
import {
  currentRecord,
  databaseFile,
  findBySerial,
  normaliseSerial,
  type IssuedRecord,
  type IdentityKind,
  type RevocationReason,
  REVOCATION_REASONS,
} from "./database";
import { generateKey, pem, isKeyType, keyTypeOf, type KeyMaterial } from "./keys";
import { generateKeys, type Progress, type RsaKeygen } from "./keygen";
import { type KeyType, type IdentityPaths, type PkiPaths } from "./paths";
import { DEFAULT_VALIDITY_DAYS } from "./profiles";
import { signCertificate } from "./sign";
import { issueLeaf, leafTemplate, type LeafCert } from "./bulk-leaf";
import { revocationsFile } from "./revocations";
import {
  exists,
  readBytes,
  readText,
  withLock,
  writeFiles,
  ensureDir,
  KEY_MODE,
  PUBLIC_MODE,
  type FileWrite,
} from "./store";

export const DEFAULT_BROKER_HOSTS = ["localhost", "127.0.0.1", "::1"] as const;
export const DEFAULT_SERVICES = ["ingest"] as const;

export interface IssueCommon {
  stateDir: string;
  /** Replace an existing key and certificate (the old certificate stays valid until revoked). */
  force?: boolean;
  days?: number;
  now?: Date;
}

/** Serialises every change to one CA: the database and CRL are read-modify-write. */
export function withCa<T>(stateDir: string, fn: (ca: LoadedCa) => Promise<T>): Promise<T> {
  return loadCa(stateDir).then((probe) =>
    withLock(join(probe.paths.caPrivateDir, ".lock"), async () => fn(await loadCa(stateDir))),
  );
}

function identityFiles(
  p: IdentityPaths,
  key: KeyMaterial,
  certDer: Uint8Array,
  how: "new" | "replace",
  chain?: x509.X509Certificate,
): FileWrite[] {
  const certPem =
    pem("CERTIFICATE", certDer) + (chain ? pem("CERTIFICATE", new Uint8Array(chain.rawData)) : "");
  const files: FileWrite[] = [
    { path: p.key, data: pem("PRIVATE KEY", key.pkcs8), mode: KEY_MODE, how },
    { path: p.cert, data: certPem, mode: PUBLIC_MODE, how },
  ];
  if (p.keyDer) files.push({ path: p.keyDer, data: key.pkcs8, mode: KEY_MODE, how });
  if (p.certDer) files.push({ path: p.certDer, data: certDer, mode: PUBLIC_MODE, how });
  return files;
}

/**
 * The database and the broker's revocation list, written with every change: a new certificate for an
 * identity whose certificates were all revoked takes it off the list the broker denies.
 */
function caRecords(ca: LoadedCa): FileWrite[] {
  return [databaseFile(ca.paths.database, ca.db), revocationsFile(ca.paths.revocations, ca.db)];
}

const derOf = (cert: x509.X509Certificate): Uint8Array => new Uint8Array(cert.rawData);

export function checkName(kind: "device" | "service", name: unknown): string {
  const problem = deviceIdProblem(name);
  if (problem)
    throw new PkiError(
      "invalid_id",
      kind === "device" ? problem : problem.replace("device id", "service name"),
    );
  return name as string;
}

/**
 * CNs the broker's ACL grants fleet-wide read rights (infra/mosquitto/acl.template): a board
 * holding one of these names would read every board's telemetry, so no device may, whether or
 * not the service has a certificate yet.
 */
export const RESERVED_SERVICE_NAMES: readonly string[] = SERVICE_IDENTITIES;

/** Device ids and service names share the CN namespace the broker's ACL keys on, so they must not collide. */
function checkNoClash(ca: LoadedCa, kind: "device" | "service", name: string): void {
  if (kind === "device" && RESERVED_SERVICE_NAMES.includes(name.toLowerCase()))
    throw new PkiError(
      "name_clash",
      `"${name}" is reserved for a service identity (the broker's ACL gives it fleet-wide rights); choose another device id`,
    );
  const other = kind === "device" ? "service" : "device";
  if (ca.db.issued.some((r) => r.kind === other && r.name.toLowerCase() === name.toLowerCase())) {
    throw new PkiError(
      "name_clash",
      `"${name}" is already a ${other} identity; device ids and service names must differ (the broker maps the CN to its ACL user)`,
    );
  }
}

export interface IssuedIdentity {
  name: string;
  serial: string;
  notAfter: Date;
  paths: IdentityPaths;
}

/** Broker certificate: RSA-2048 so the firmware's ECDHE_RSA suite and Node's TLS 1.3 both work; serverAuth; SANs for every host. */
export async function issueBroker(
  o: IssueCommon & { hosts?: readonly string[]; key?: KeyMaterial },
): Promise<IssuedIdentity> {
  const hosts = [...(o.hosts ?? DEFAULT_BROKER_HOSTS)];
  if (hosts.length === 0)
    throw new PkiError("bad_input", "the broker needs at least one host name or IP address");
  for (const h of hosts) {
    if (!/^[A-Za-z0-9.:*-]+$/.test(h) || h.length > 253)
      throw new PkiError("bad_input", `invalid broker host "${h}"`);
  }
  return withCa(o.stateDir, async (ca) => {
    const p = ca.paths.broker;
    if (!o.force && ((await exists(p.key)) || (await exists(p.cert)))) {
      throw new PkiError(
        "exists",
        `a broker certificate already exists (${p.cert}); refusing to replace it without --force`,
      );
    }
    const now = o.now ?? new Date();
    const key = o.key ?? (await generateKey("rsa-2048"));
    const cert = await signCertificate(
      {
        kind: "broker",
        name: hosts[0] ?? "broker",
        keyType: key.type,
        spki: key.spki,
        days: o.days ?? DEFAULT_VALIDITY_DAYS.broker,
        now,
        hosts,
      },
      ca.issuing,
    );
    // The broker sends its issuing CA along, so a client that trusts only the root can build the chain.
    supersede(ca, "broker", hosts[0] ?? "broker", cert);
    ca.db.issued.push(record(cert, "broker", hosts[0] ?? "broker", key.type, now));
    await writeFiles([
      ...identityFiles(p, key, derOf(cert), o.force ? "replace" : "new", ca.issuing.cert),
      ...caRecords(ca),
    ]);
    return { name: hosts[0] ?? "broker", serial: cert.serialNumber, notAfter: cert.notAfter, paths: p };
  });
}

export async function issueService(
  o: IssueCommon & { name: string; keyType?: KeyType },
): Promise<IssuedIdentity> {
  const name = checkName("service", o.name);
  return withCa(o.stateDir, async (ca) => {
    checkNoClash(ca, "service", name);
    const p = ca.paths.service(name);
    if (!o.force && ((await exists(p.key)) || (await exists(p.cert)))) {
      throw new PkiError(
        "exists",
        `service "${name}" already has a certificate (${p.cert}); refusing to replace it without --force`,
      );
    }
    const now = o.now ?? new Date();
    const key = await generateKey(o.keyType ?? "p256");
    const cert = await signCertificate(
      {
        kind: "service",
        name,
        keyType: key.type,
        spki: key.spki,
        days: o.days ?? DEFAULT_VALIDITY_DAYS.service,
        now,
      },
      ca.issuing,
    );
    supersede(ca, "service", name, cert);
    ca.db.issued.push(record(cert, "service", name, key.type, now));
    await writeFiles([...identityFiles(p, key, derOf(cert), o.force ? "replace" : "new"), ...caRecords(ca)]);
    return { name, serial: cert.serialNumber, notAfter: cert.notAfter, paths: p };
  });
}

function supersede(ca: LoadedCa, kind: IdentityKind, name: string, by: x509.X509Certificate): void {
  const old = currentRecord(ca.db, kind, name);
  if (old) old.supersededBy = by.serialNumber.toLowerCase();
}

/** Throws on an invalid or duplicated id before any work starts. */
export function checkDeviceIds(ids: readonly string[]): void {
  const seen = new Map<string, string>();
  for (const id of ids) {
    checkName("device", id);
    // Case-insensitive: a CN compare, a case-insensitive file system or a human would confuse them.
    const key = id.toLowerCase();
    const prev = seen.get(key);
    if (prev !== undefined)
      throw new PkiError(
        "duplicate_id",
        `duplicate device id "${id}"${prev !== id ? ` (same as "${prev}" ignoring case)` : ""}`,
      );
    seen.set(key, id);
  }
}

export interface IssueDevicesOptions extends IssueCommon {
  ids: readonly string[];
  keyType?: KeyType;
  /** Existing devices are kept (skip, the default: idempotent) or are an error. */
  ifExists?: "skip" | "error";
  onProgress?: Progress;
  rsaKeygen?: RsaKeygen;
  /** For tests: an explicit validity window. */
  notBefore?: Date;
  notAfter?: Date;
}

export interface IssueDevicesResult {
  issued: IssuedIdentity[];
  skipped: string[];
  /** Wall-clock milliseconds per phase, for the benchmark. */
  timings: { keys: number; certificates: number; files: number };
}

export async function issueDevices(o: IssueDevicesOptions): Promise<IssueDevicesResult> {
  checkDeviceIds(o.ids);
  const keyType = o.keyType ?? "rsa-2048";
  if (!isKeyType(keyType))
    throw new PkiError("bad_input", `unknown key type "${String(keyType)}" (use rsa-2048 or p256)`);
  return withCa(o.stateDir, async (ca) => {
    const todo: string[] = [];
    const skipped: string[] = [];
    for (const id of o.ids) {
      checkNoClash(ca, "device", id);
      const has = currentRecord(ca.db, "device", id) !== undefined || (await exists(ca.paths.device(id).key));
      if (has && !o.force) {
        if ((o.ifExists ?? "skip") === "error")
          throw new PkiError(
            "exists",
            `device "${id}" already has a certificate; use rotate, or --force to replace it`,
          );
        skipped.push(id);
      } else todo.push(id);
    }
    const now = o.now ?? new Date();
    const days = o.days ?? DEFAULT_VALIDITY_DAYS.device;
    const timings = { keys: 0, certificates: 0, files: 0 };
    let mark = performance.now();
    const lap = (phase: keyof typeof timings): void => {
      const t = performance.now();
      timings[phase] += t - mark;
      mark = t;
    };
    const keys = await generateKeys(keyType, todo.length, o.onProgress, o.rsaKeygen);
    lap("keys");
    const template = leafTemplate(ca.issuing, keyType);
    const issued: IssuedIdentity[] = [];
    // Written in chunks; each chunk's files and database records land together or not at all, so a
    // full disk leaves the state as it was before that chunk, and an interrupted run of thousands
    // keeps what it finished.
    const CHUNK = 250;
    for (let start = 0; start < todo.length; start += CHUNK) {
      const chunk = todo.slice(start, start + CHUNK);
      const keyOf = (j: number): KeyMaterial => keys[start + j] as KeyMaterial;
      const leaves = await Promise.all(
        chunk.map((id, j) =>
          issueLeaf(template, {
            name: id,
            spki: keyOf(j).spki,
            now,
            days,
            notBefore: o.notBefore,
            notAfter: o.notAfter,
          }),
        ),
      );
      lap("certificates");
      chunk.forEach((id, j) => {
        const leaf = leaves[j] as LeafCert;
        const old = currentRecord(ca.db, "device", id);
        if (old) old.supersededBy = leaf.serial;
        ca.db.issued.push({
          serial: leaf.serial,
          kind: "device",
          name: id,
          keyType,
          notBefore: leaf.notBefore.toISOString(),
          notAfter: leaf.notAfter.toISOString(),
          issuedAt: now.toISOString(),
        });
      });
      await writeFiles(
        [
          ...chunk.flatMap((id, j) =>
            identityFiles(
              ca.paths.device(id),
              keyOf(j),
              (leaves[j] as LeafCert).der,
              o.force ? "replace" : "new",
            ),
          ),
          ...caRecords(ca),
        ],
        { precheck: false },
      );
      chunk.forEach((id, j) => {
        const leaf = leaves[j] as LeafCert;
        issued.push({ name: id, serial: leaf.serial, notAfter: leaf.notAfter, paths: ca.paths.device(id) });
      });
      lap("files");
    }
    return { issued, skipped, timings };
  });
}

/** The certificate a device currently holds, read from its folder (the source of truth for the serial). */
export async function readDeviceCert(paths: PkiPaths, id: string): Promise<x509.X509Certificate> {
  const p = paths.device(id);
  if (!(await exists(p.cert))) throw new PkiError("not_found", `unknown device "${id}" (no ${p.cert})`);
  return new x509.X509Certificate(await readText(p.cert, `certificate of device "${id}"`));
}

export function parseReason(reason: string | undefined): RevocationReason {
  const r = reason ?? "unspecified";
  if (!(REVOCATION_REASONS as readonly string[]).includes(r)) {
    throw new PkiError(
      "bad_input",
      `unknown revocation reason "${r}" (use one of: ${REVOCATION_REASONS.join(", ")})`,
    );
  }
  return r as RevocationReason;
}

/**
 * Revokes every certificate the device ever had (the current one, those replaced by `rotate` or
 * `devices --force`, and any in its archive folder) and rewrites the CRLs. Revoking twice is harmless.
 */
export async function revokeDevice(
  stateDir: string,
  id: string,
  reason?: string,
  now = new Date(),
): Promise<string[]> {
  checkName("device", id);
  const why = parseReason(reason);
  return withCa(stateDir, async (ca) => {
    for (const cert of await deviceCertsOnDisk(ca.paths, id)) await adoptRecord(ca, cert, "device", id, now);
    const serials = revokeRecords(ca, (r) => r.kind === "device" && r.name === id, why, now);
    if (serials.length === 0)
      throw new PkiError("not_found", `unknown device "${id}" (nothing was issued to it)`);
    await writeCrl(ca, now);
    return serials;
  });
}

/** Every certificate of a service identity (e.g. `ingest`), or of the broker. */
export async function revokeIdentity(
  stateDir: string,
  target: { kind: "service"; name: string } | { kind: "broker" },
  reason?: string,
  now = new Date(),
): Promise<string[]> {
  if (target.kind === "service") checkName("service", target.name);
  const why = parseReason(reason);
  const label = target.kind === "service" ? `service "${target.name}"` : "the broker";
  return withCa(stateDir, async (ca) => {
    const serials = revokeRecords(
      ca,
      (r) => r.kind === target.kind && (target.kind === "broker" || r.name === target.name),
      why,
      now,
    );
    if (serials.length === 0) throw new PkiError("not_found", `no certificate was issued to ${label}`);
    await writeCrl(ca, now);
    return serials;
  });
}

/** One certificate by serial (hex, any case, colons allowed): a leaf or the issuing CA, never the root. */
export async function revokeSerial(
  stateDir: string,
  serial: string,
  reason?: string,
  now = new Date(),
): Promise<IssuedRecord> {
  const why = parseReason(reason);
  const wanted = normaliseSerial(serial);
  if (!/^[0-9a-f]+$/.test(wanted))
    throw new PkiError("bad_input", `"${serial}" is not a hexadecimal serial number`);
  return withCa(stateDir, async (ca) => {
    const rec = findBySerial(ca.db, wanted);
    if (!rec) throw new PkiError("not_found", `no certificate with serial ${wanted} was issued by this CA`);
    if (rec.kind === "root")
      throw new PkiError(
        "bad_input",
        "the root CA cannot be revoked by its own CRL; replace the CA (init --force)",
      );
    revokeRecords(ca, (r) => r === rec, why, now);
    await writeCrl(ca, now);
    return rec;
  });
}

function revokeRecords(
  ca: LoadedCa,
  which: (r: IssuedRecord) => boolean,
  reason: RevocationReason,
  now: Date,
): string[] {
  const hit = ca.db.issued.filter(which);
  for (const r of hit) r.revoked ??= { at: now.toISOString(), reason };
  return hit.map((r) => r.serial);
}

/** The device's current certificate and its archived ones, as files (a record may be missing for them). */
async function deviceCertsOnDisk(paths: PkiPaths, id: string): Promise<x509.X509Certificate[]> {
  const p = paths.device(id);
  const files = (await exists(p.cert)) ? [p.cert] : [];
  const archive = join(p.cert, "..", "archive");
  try {
    for (const e of await readdir(archive, { withFileTypes: true }))
      if (e.isDirectory() && (await exists(join(archive, e.name, "cert.pem"))))
        files.push(join(archive, e.name, "cert.pem"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw ioError("read", archive, err);
  }
  return Promise.all(
    files.map(async (f) => new x509.X509Certificate(await readText(f, `certificate of device "${id}"`))),
  );
}

/** A certificate issued by a run that stopped before saving its database chunk: still ours if our issuing CA signed it. */
async function adoptRecord(
  ca: LoadedCa,
  cert: x509.X509Certificate,
  kind: IdentityKind,
  name: string,
  now: Date,
): Promise<void> {
  const serial = normaliseSerial(cert.serialNumber);
  if (ca.db.issued.some((r) => r.serial === serial)) return;
  if (!(await signedByIssuing(ca, cert))) {
    throw new PkiError(
      "bad_input",
      `a certificate of ${kind} "${name}" (${serial}) was not issued by this CA`,
    );
  }
  ca.db.issued.push({ ...record(cert, kind, name, "unknown", now), serial });
}

/**
 * A new key and certificate for a device. The old files move to `devices/<id>/archive/<serial>/`;
 * the old certificate stays valid (a board in the field keeps working until it is re-provisioned)
 * unless `revokeOld` is set.
 */
export async function rotateDevice(
  o: IssueCommon & { id: string; keyType?: KeyType; revokeOld?: boolean },
): Promise<IssuedIdentity> {
  checkName("device", o.id);
  return withCa(o.stateDir, async (ca) => {
    const p = ca.paths.device(o.id);
    const old = await readDeviceCert(ca.paths, o.id);
    const oldSerial = old.serialNumber.toLowerCase();
    const oldRec = ca.db.issued.find((r) => r.serial === oldSerial);
    const keyType = o.keyType ?? (oldRec && isKeyType(oldRec.keyType) ? oldRec.keyType : "rsa-2048");
    const now = o.now ?? new Date();
    const key = await generateKey(keyType);
    const cert = await signCertificate(
      {
        kind: "device",
        name: o.id,
        keyType,
        spki: key.spki,
        days: o.days ?? DEFAULT_VALIDITY_DAYS.device,
        now,
      },
      ca.issuing,
    );
    const files = identityFiles(p, key, derOf(cert), "replace");
    const archived = await archiveWrites(p, oldSerial);
    if (oldRec) oldRec.supersededBy = cert.serialNumber.toLowerCase();
    ca.db.issued.push(record(cert, "device", o.id, keyType, now));
    if (o.revokeOld && oldRec) oldRec.revoked ??= { at: now.toISOString(), reason: "superseded" };
    // The archive is complete on disk before the identity it preserves is replaced.
    await writeFiles(archived);
    if (o.revokeOld) await writeCrl(ca, now, files);
    else await writeFiles([...files, ...caRecords(ca)]);
    return { name: o.id, serial: cert.serialNumber, notAfter: cert.notAfter, paths: p };
  });
}

/**
 * The device's current files as copies in `devices/<id>/archive/<serial>/`, in one batch, so the previous
 * identity (key included) is never lost to a rotation.
 */
async function archiveWrites(p: IdentityPaths, oldSerial: string): Promise<FileWrite[]> {
  const archive = join(p.cert, "..", "archive", oldSerial);
  await ensureDir(archive, 0o700);
  const current: [string | undefined, number][] = [
    [p.key, KEY_MODE],
    [p.cert, PUBLIC_MODE],
    [p.keyDer, KEY_MODE],
    [p.certDer, PUBLIC_MODE],
  ];
  const archived: FileWrite[] = [];
  for (const [path, mode] of current) {
    if (path !== undefined && (await exists(path)))
      archived.push({
        path: join(archive, basename(path)),
        data: await readBytes(path, "identity file"),
        mode,
        how: "replace",
      });
  }
  return archived;
}

/**
 * A certificate for a key the board made itself (its CSR checked by checkDeviceCsr): the host never holds
 * that key, so only the certificate is written. As with rotateDevice the old files go to the archive and
 * the old certificate stays valid until revoked, so the board keeps connecting until it switches.
 */
export async function certifyDeviceKey(
  o: IssueCommon & { id: string; spki: Uint8Array; keyType: KeyType },
): Promise<IssuedIdentity> {
  checkName("device", o.id);
  checkSpki(o.spki, o.keyType);
  return withCa(o.stateDir, async (ca) => {
    const p = ca.paths.device(o.id);
    const old = await readDeviceCert(ca.paths, o.id);
    const oldSerial = old.serialNumber.toLowerCase();
    const oldRec = ca.db.issued.find((r) => r.serial === oldSerial);
    const now = o.now ?? new Date();
    const cert = await signCertificate(
      {
        kind: "device",
        name: o.id,
        keyType: o.keyType,
        spki: o.spki,
        days: o.days ?? DEFAULT_VALIDITY_DAYS.device,
        now,
      },
      ca.issuing,
    );
    const archived = await archiveWrites(p, oldSerial);
    if (oldRec) oldRec.supersededBy = cert.serialNumber.toLowerCase();
    ca.db.issued.push(record(cert, "device", o.id, o.keyType, now));
    await writeFiles(archived);
    const certFiles: FileWrite[] = [
      { path: p.cert, data: pem("CERTIFICATE", derOf(cert)), mode: PUBLIC_MODE, how: "replace" },
    ];
    if (p.certDer) certFiles.push({ path: p.certDer, data: derOf(cert), mode: PUBLIC_MODE, how: "replace" });
    await writeFiles([...certFiles, ...caRecords(ca)]);
    // The key files hold the old key (the archive has it now): left in place they would pair the new
    // certificate with a key that is not its own, and whoever exports or emulates the board would use it.
    for (const path of [p.key, p.keyDer]) {
      if (path === undefined) continue;
      try {
        await rm(path, { force: true });
      } catch (err) {
        throw ioError("remove", path, err);
      }
    }
    return { name: o.id, serial: cert.serialNumber, notAfter: cert.notAfter, paths: p };
  });
}

/** The caller's word for the key type is checked: the database and the certificate's profile follow it. */
function checkSpki(spki: Uint8Array, keyType: KeyType): void {
  let actual: string;
  try {
    actual = keyTypeOf(createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }));
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new PkiError("bad_input", `not a device public key (${why})`, { cause: err });
  }
  if (actual !== keyType)
    throw new PkiError("bad_input", `the public key is ${actual}, not the ${keyType} it was given as`);
}

/** Ids of every device folder, sorted. */
export async function listDeviceIds(paths: PkiPaths): Promise<string[]> {
  try {
    const entries = await readdir(paths.devicesDir, { withFileTypes: true });
    return entries
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw ioError("read", paths.devicesDir, err);
  }
}
