import { x509 } from "./x509";
import { createCa, loadCa, writeCrl } from "./ca";
import { PkiError } from "./errors";
import {
  DEFAULT_BROKER_HOSTS,
  DEFAULT_SERVICES,
  checkDeviceIds,
  issueBroker,
  issueDevices,
  issueService,
  withCa,
} from "./identities";
import type { Progress } from "./keygen";
import { pkiPaths, type KeyType, type PkiPaths } from "./paths";
import { exists, readText } from "./store";
import { ensureNextBrokerKey } from "./broker-key";

export interface EnsureDevPkiOptions {
  stateDir: string;
  devices: string[];
  services?: string[];
  brokerHosts?: string[];
  deviceKeyType?: KeyType;
  onProgress?: Progress;
}

/**
 * Creates whatever of the CA, broker, services and devices is missing and never replaces anything
 * that exists, so `setup` and tests can call it every time. Also re-signs the CRL when a third of its
 * lifetime is left, because an expired CRL makes OpenSSL (Mosquitto, Node) refuse every client.
 */
export async function ensureDevPki(o: EnsureDevPkiOptions): Promise<PkiPaths> {
  checkDeviceIds(o.devices);
  const paths = pkiPaths(o.stateDir);
  if (!(await exists(paths.issuingKey))) {
    try {
      await createCa(o.stateDir);
    } catch (err) {
      // Another run created it meanwhile: use theirs.
      if (!(err instanceof PkiError && err.code === "exists")) throw err;
    }
  }
  if (!(await exists(paths.broker.cert))) {
    await ignoreExists(
      issueBroker({ stateDir: o.stateDir, hosts: o.brokerHosts ?? [...DEFAULT_BROKER_HOSTS] }),
    );
  }
  // Boards carry the next key's pin too, so the broker can rotate its key without a visit.
  await ensureNextBrokerKey(o.stateDir).catch((err: unknown) => {
    // Two runs at once: the other one made it.
    if (!(err instanceof PkiError && err.code === "exists")) throw err;
  });
  for (const name of o.services ?? [...DEFAULT_SERVICES]) {
    if (!(await exists(paths.service(name).cert)))
      await ignoreExists(issueService({ stateDir: o.stateDir, name }));
  }
  await issueDevices({
    stateDir: o.stateDir,
    ids: o.devices,
    keyType: o.deviceKeyType ?? "rsa-2048",
    ifExists: "skip",
    onProgress: o.onProgress,
  });
  if (await crlNeedsRefresh(paths)) await withCa(o.stateDir, (ca) => writeCrl(ca));
  return paths;
}

async function ignoreExists(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof PkiError && err.code === "exists")) throw err;
  }
}

export async function crlNeedsRefresh(paths: PkiPaths, now = new Date()): Promise<boolean> {
  if (!(await exists(paths.crl))) return true;
  const text = await readText(paths.crl, "CRL");
  const blocks = text.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) ?? [];
  if (blocks.length < 2) return true;
  return blocks.some((b) => {
    const crl = new x509.X509Crl(b);
    const next = crl.nextUpdate?.getTime() ?? 0;
    const life = next - crl.thisUpdate.getTime();
    return next - now.getTime() < life / 3;
  });
}

/**
 * Re-signs the CRLs when a third of their lifetime is left (or they lapsed), under the CA lock; returns
 * whether it did. Broker launchers call it at start and on a schedule, so a stack started long after
 * setup never serves a lapsed CRL (which makes Mosquitto refuse every board).
 */
export async function refreshCrlIfDue(stateDir: string, now = new Date()): Promise<boolean> {
  const paths = pkiPaths(stateDir);
  if (!(await crlNeedsRefresh(paths, now))) return false;
  return withCa(stateDir, async (ca) => {
    // Another run may have re-signed it while this one waited for the lock.
    if (!(await crlNeedsRefresh(paths, now))) return false;
    await writeCrl(ca, now);
    return true;
  });
}

/** Re-signs the CRLs (e.g. from cron before they expire); the broker must be restarted to read them. */
export async function refreshCrl(stateDir: string): Promise<PkiPaths> {
  await loadCa(stateDir);
  await withCa(stateDir, (ca) => writeCrl(ca));
  return pkiPaths(stateDir);
}
