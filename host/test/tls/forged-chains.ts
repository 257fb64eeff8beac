/**
 * Test kit: the server chains of the rogue brokers that took readings from the firmware on Moddable's
 * simulator (issue 13), made from a real fleet PKI, plus the real broker's chain. DER, leaf first.
 */
import { readFile } from "node:fs/promises";
import { loadCa } from "../../../pki/src/ca";
import { generateKey, importSigningKey, parsePrivateKey } from "../../../pki/src/keys";
import { pkiPaths } from "../../../pki/src/paths";
import { signCertificate, keyIdOf } from "../../../pki/src/sign";
import type { Signer } from "../../../pki/src/sign";
import { x509 } from "../../../pki/src/x509";

export interface ServerChain {
  name: string;
  chain: Uint8Array[];
  /** PEM of the leaf's private key and of the chain, for a node:tls server presenting it. */
  keyPem: string;
  certPem: string;
}

export interface ForgedChains {
  anchor: Uint8Array;
  real: ServerChain;
  /** A leaf for the broker's names signed by an attacker's key, then the fleet's real issuing CA. */
  attackerSigned: ServerChain;
  /** A leaf signed with a captured board's device key, then that device certificate, then the issuing CA. */
  deviceSigned: ServerChain;
  /** A self-signed leaf with the broker's names. */
  selfSigned: ServerChain;
  /** A leaf the real issuing CA did sign for the broker's names, but for another key (a mis-issuance). */
  misIssued: ServerChain;
}

const der = (c: x509.X509Certificate): Uint8Array => new Uint8Array(c.rawData);
const pemOf = (certs: Uint8Array[]): string =>
  certs.map((c) => new x509.X509Certificate(c).toString("pem")).join("\n") + "\n";

export async function forgeChains(
  stateDir: string,
  deviceId: string,
  hosts: readonly string[],
): Promise<ForgedChains> {
  const paths = pkiPaths(stateDir);
  const ca = await loadCa(stateDir);
  const issuingDer = der(ca.issuing.cert);
  const now = new Date();
  type SelfSigned = { selfKey: Awaited<ReturnType<typeof importSigningKey>> };
  const leaf = async (name: string, signer: Signer | "self", tail: Uint8Array[]): Promise<ServerChain> => {
    const key = await generateKey("rsa-2048");
    const by: Signer | SelfSigned = signer === "self" ? { selfKey: await importSigningKey(key) } : signer;
    const cert = await signCertificate(
      { kind: "broker", name: hosts[0]!, keyType: "rsa-2048", spki: key.spki, days: 30, now, hosts },
      by,
    );
    const chain = [der(cert), ...tail];
    const keyPem = parsePrivateKey(key.pkcs8).object.export({ type: "pkcs8", format: "pem" }).toString();
    return { name, chain, keyPem, certPem: pemOf(chain) };
  };

  const attacker = await generateKey("rsa-2048");
  const attackerSigner: Signer = { ...ca.issuing, key: await importSigningKey(attacker), material: attacker };

  const deviceCert = new x509.X509Certificate(await readFile(paths.device(deviceId).cert, "utf8"));
  const deviceKey = parsePrivateKey(await readFile(paths.device(deviceId).key, "utf8")).material;
  const deviceSigner: Signer = {
    cert: deviceCert,
    key: await importSigningKey(deviceKey),
    keyType: deviceKey.type,
    keyId: keyIdOf(deviceCert),
    material: deviceKey,
  };

  const brokerPem = await readFile(paths.broker.cert, "utf8");
  const realChain = (
    brokerPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  ).map((b) => der(new x509.X509Certificate(b)));
  return {
    anchor: der(ca.rootCert),
    real: {
      name: "the real broker",
      chain: realChain,
      keyPem: await readFile(paths.broker.key, "utf8"),
      certPem: brokerPem,
    },
    attackerSigned: await leaf("attacker-signed leaf + real issuing CA", attackerSigner, [issuingDer]),
    deviceSigned: await leaf("leaf signed by a device key + device cert + issuing CA", deviceSigner, [
      der(deviceCert),
      issuingDer,
    ]),
    selfSigned: await leaf("self-signed leaf", "self", []),
    misIssued: await leaf("leaf issued by the real CA for another key", ca.issuing, [issuingDer]),
  };
}
