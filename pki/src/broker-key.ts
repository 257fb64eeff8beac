/**
 * The broker's key pins and its next key.
 *
 * Every board is provisioned with the pin-sha256 (SHA-256 of the SubjectPublicKeyInfo, RFC 7469 §2.4) of the
 * broker's current key and of the next one, made ahead of time, and refuses any server whose leaf key matches
 * neither (firmware/src/tls/broker-trust.ts). So the broker can move to its next key without a visit to any
 * board: `rotateBrokerKey` issues a certificate for the next key, makes it current and makes a new next key.
 * The next key lives beside the broker's own key (the broker may read it; nobody else needs to).
 */
import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
import { join } from "node:path";
import { unlink } from "node:fs/promises";
import { x509 } from "./x509";
import { PkiError } from "./errors";
import { issueBroker, type IssueCommon, type IssuedIdentity } from "./identities";
import { generateKey, parsePrivateKey, pem, type KeyMaterial } from "./keys";
import { pkiPaths, type PkiPaths } from "./paths";
import { exists, readText, writeFiles, KEY_MODE } from "./store";

export interface BrokerPins {
  /** Pin of the key the broker serves with now. */
  current: Uint8Array;
  /** Pin of the key made ahead of time for the next rotation; absent if none was made. */
  next?: Uint8Array;
}

export function nextBrokerKeyPath(paths: PkiPaths): string {
  return join(paths.dir, "broker", "next-key.pem");
}

/** pin-sha256 of a DER SubjectPublicKeyInfo. */
export function spkiPin(spki: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(spki).digest());
}

/** The pins to provision: current first, then next. Throws if the broker has no certificate yet. */
export async function brokerPins(stateDir: string): Promise<BrokerPins> {
  const paths = pkiPaths(stateDir);
  if (!(await exists(paths.broker.cert))) {
    throw new PkiError(
      "not_found",
      `no broker certificate at ${paths.broker.cert}: run npm run pki -- broker`,
    );
  }
  const leaf = new x509.X509Certificate(firstPem(await readText(paths.broker.cert, "broker certificate")));
  const out: BrokerPins = { current: spkiPin(new Uint8Array(leaf.publicKey.rawData)) };
  const nextPath = nextBrokerKeyPath(paths);
  if (await exists(nextPath)) out.next = spkiPin(publicSpki(await readText(nextPath, "next broker key")));
  return out;
}

/** The pins a board is provisioned with, in NVS order: current first, then next when one was made. */
export async function provisionedBrokerPins(stateDir: string): Promise<Uint8Array[]> {
  const pins = await brokerPins(stateDir);
  return pins.next ? [pins.current, pins.next] : [pins.current];
}

/** Makes the next broker key if there is none (or replaces it with `force`); returns its pin. */
export async function ensureNextBrokerKey(
  stateDir: string,
  o: { force?: boolean } = {},
): Promise<{ created: boolean; pin: Uint8Array }> {
  const path = nextBrokerKeyPath(pkiPaths(stateDir));
  if (!o.force && (await exists(path)))
    return { created: false, pin: spkiPin(publicSpki(await readText(path, "next broker key"))) };
  const key = await generateKey("rsa-2048");
  await writeFiles([
    { path, data: pem("PRIVATE KEY", key.pkcs8), mode: KEY_MODE, how: o.force ? "replace" : "new" },
  ]);
  return { created: true, pin: spkiPin(key.spki) };
}

/**
 * Moves the broker to its next key: a certificate for the next key (same names as the current certificate
 * unless `hosts` is given) becomes the broker's, and a new next key is made. The broker serves the new key
 * from its next start; boards provisioned with the old "next" pin accept it.
 */
export async function rotateBrokerKey(
  o: IssueCommon & { hosts?: readonly string[] },
): Promise<IssuedIdentity & { pins: BrokerPins }> {
  const paths = pkiPaths(o.stateDir);
  const nextPath = nextBrokerKeyPath(paths);
  if (!(await exists(nextPath))) {
    throw new PkiError(
      "not_found",
      `no next broker key (${nextPath}): boards provisioned without its pin would refuse a new key. Run npm run pki -- broker --next, re-provision, then rotate`,
    );
  }
  const hosts = o.hosts ?? (await currentBrokerHosts(paths));
  const next: KeyMaterial = parsePrivateKey(await readText(nextPath, "next broker key")).material;
  const issued = await issueBroker({ ...o, hosts, key: next, force: true });
  // The next key is now the current one; a fresh next key keeps one rotation ahead.
  await unlink(nextPath);
  await ensureNextBrokerKey(o.stateDir);
  return { ...issued, pins: await brokerPins(o.stateDir) };
}

/** The host names and addresses the broker's current certificate names. */
export async function currentBrokerHosts(paths: PkiPaths): Promise<string[]> {
  const leaf = new x509.X509Certificate(firstPem(await readText(paths.broker.cert, "broker certificate")));
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  const hosts = san?.names.items.filter((n) => n.type === "dns" || n.type === "ip").map((n) => n.value) ?? [];
  if (hosts.length === 0)
    throw new PkiError("bad_input", "the current broker certificate names no host: give --host");
  return hosts;
}

function publicSpki(privatePem: string): Uint8Array {
  return new Uint8Array(
    createPublicKey(createPrivateKey(privatePem)).export({ type: "spki", format: "der" }),
  );
}

function firstPem(text: string): string {
  const end = text.indexOf("-----END CERTIFICATE-----");
  if (end < 0) throw new PkiError("bad_input", "no certificate in the broker's cert.pem");
  return text.slice(0, end + "-----END CERTIFICATE-----".length);
}
