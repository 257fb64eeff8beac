import { join } from "node:path";
import { PkiError } from "./errors";
import { checkName, readDeviceCert } from "./identities";
import { loadCa, signedByIssuing } from "./ca";
import { parsePrivateKey } from "./keys";
import { exists, readBytes, readText, writeFiles, KEY_MODE, PUBLIC_MODE, type FileWrite } from "./store";

/** Everything a board needs to connect: its identity (DER for the firmware/NVS, PEM for Node) and what to trust. */
export interface DeviceBundle {
  deviceId: string;
  serial: string;
  keyType: string;
  notBefore: Date;
  notAfter: Date;
  certDer: Uint8Array;
  /** PKCS#8 DER, the form Moddable's `clientKey` takes. */
  keyDer: Uint8Array;
  certPem: string;
  keyPem: string;
  /** Issuing + root CA, PEM. */
  caBundlePem: string;
  /** Trust anchor for the broker's chain (the broker sends its issuing CA). */
  rootDer: Uint8Array;
  issuingDer: Uint8Array;
}

/** Refuses a revoked, expired or not yet valid identity: provisioning one would brick the board's connection. */
export async function exportDeviceBundle(
  stateDir: string,
  id: string,
  o: { now?: Date } = {},
): Promise<DeviceBundle> {
  checkName("device", id);
  const ca = await loadCa(stateDir);
  const p = ca.paths.device(id);
  const cert = await readDeviceCert(ca.paths, id);
  const serial = cert.serialNumber.toLowerCase();
  const now = o.now ?? new Date();
  if (!(await signedByIssuing(ca, cert))) {
    throw new PkiError("bad_input", `the certificate of device "${id}" was not issued by this CA`);
  }
  const rec = ca.db.issued.find((r) => r.serial === serial);
  if (rec?.revoked)
    throw new PkiError(
      "revoked",
      `device "${id}" certificate ${serial} was revoked on ${rec.revoked.at} (${rec.revoked.reason}); rotate it first`,
    );
  if (cert.notAfter.getTime() <= now.getTime())
    throw new PkiError(
      "expired",
      `device "${id}" certificate ${serial} expired on ${cert.notAfter.toISOString()}; rotate it first`,
    );
  if (cert.notBefore.getTime() > now.getTime())
    throw new PkiError(
      "not_yet_valid",
      `device "${id}" certificate ${serial} is not valid before ${cert.notBefore.toISOString()}`,
    );
  if (!(await exists(p.key)))
    throw new PkiError(
      "not_found",
      `device "${id}" has no key on this host: its key is on the board (rotated with a CSR, certificate ${serial}); there is no bundle to export, the board already holds its identity`,
    );
  const keyPem = await readText(p.key, `key of device "${id}"`);
  const key = parsePrivateKey(keyPem).material;
  if (!Buffer.from(cert.publicKey.rawData).equals(key.spki))
    throw new PkiError("bad_input", `the key of device "${id}" does not match its certificate`);
  return {
    deviceId: id,
    serial,
    keyType: key.type,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    certDer: new Uint8Array(cert.rawData),
    keyDer: new Uint8Array(key.pkcs8),
    certPem: cert.toString("pem") + "\n",
    keyPem,
    caBundlePem: await readText(ca.paths.caBundle, "CA bundle"),
    rootDer: new Uint8Array(await readBytes(ca.paths.rootDer, "root CA certificate")),
    issuingDer: new Uint8Array(await readBytes(ca.paths.issuingDer, "issuing CA certificate")),
  };
}

/** Writes a bundle to `<outDir>/<id>/`; keys 0600; refuses to overwrite unless `force`. */
export async function writeDeviceBundle(
  bundle: DeviceBundle,
  outDir: string,
  force = false,
): Promise<string> {
  const dir = join(outDir, bundle.deviceId);
  const how = force ? "replace" : "new";
  const meta = {
    deviceId: bundle.deviceId,
    serial: bundle.serial,
    keyType: bundle.keyType,
    notBefore: bundle.notBefore.toISOString(),
    notAfter: bundle.notAfter.toISOString(),
    files: {
      cert: "cert.der",
      key: "key.der",
      certPem: "cert.pem",
      keyPem: "key.pem",
      caBundle: "ca-bundle.pem",
      root: "root.der",
      issuing: "issuing.der",
    },
  };
  const files: FileWrite[] = [
    { path: join(dir, "key.der"), data: bundle.keyDer, mode: KEY_MODE, how },
    { path: join(dir, "key.pem"), data: bundle.keyPem, mode: KEY_MODE, how },
    { path: join(dir, "cert.der"), data: bundle.certDer, mode: PUBLIC_MODE, how },
    { path: join(dir, "cert.pem"), data: bundle.certPem, mode: PUBLIC_MODE, how },
    { path: join(dir, "ca-bundle.pem"), data: bundle.caBundlePem, mode: PUBLIC_MODE, how },
    { path: join(dir, "root.der"), data: bundle.rootDer, mode: PUBLIC_MODE, how },
    { path: join(dir, "issuing.der"), data: bundle.issuingDer, mode: PUBLIC_MODE, how },
    { path: join(dir, "bundle.json"), data: `${JSON.stringify(meta, null, 2)}\n`, mode: PUBLIC_MODE, how },
  ];
  await writeFiles(files);
  return dir;
}
