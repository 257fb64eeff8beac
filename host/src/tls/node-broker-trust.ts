/**
 * The firmware's broker check (firmware/src/tls/broker-trust) over node:crypto, for every Node client that
 * stands in for a board. Node's TLS has already verified the chain against the root by the time this runs;
 * the firmware's rules run on top (pin first), so an emulated board refuses exactly what a real one does.
 */
import { X509Certificate, createHash } from "node:crypto";
import type { TLSSocket } from "node:tls";
import BrokerTrust, { describeVerdict } from "../../../firmware/src/tls/broker-trust";
import type { BrokerVerdict } from "../../../firmware/src/tls/broker-trust";

export function nodeBrokerTrust(o: { pins: readonly Uint8Array[]; anchor: Uint8Array }): BrokerTrust {
  return new BrokerTrust({
    pins: o.pins,
    anchor: o.anchor,
    sha256: (data) => new Uint8Array(createHash("sha256").update(data).digest()),
    verifySignature: (issuer, cert) =>
      new X509Certificate(cert).verify(new X509Certificate(issuer).publicKey),
  });
}

/** The chain the peer presented as Node verified it, leaf first (it may end with the local root). */
export function peerChain(socket: TLSSocket): Uint8Array[] {
  const out: Uint8Array[] = [];
  let cert = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    out.push(new Uint8Array(cert.raw));
    cert = cert.issuerCertificate;
  }
  return out;
}

/**
 * A server check for a fleet of emulated boards: one verdict per distinct chain, refreshed every minute
 * (validity depends on the clock), since thousands of boards meet the same broker.
 */
export class BrokerCheck {
  readonly #trust: BrokerTrust;
  readonly #cache = new Map<string, { verdict: BrokerVerdict; at: number }>();

  constructor(o: { pins: readonly Uint8Array[]; anchor: Uint8Array }) {
    this.#trust = nodeBrokerTrust(o);
  }

  /** undefined when the server is the broker, else the reason to refuse it. */
  refusal(socket: TLSSocket): string | undefined {
    const chain = peerChain(socket);
    const now = Date.now();
    const key = chain.map((c) => createHash("sha1").update(c).digest("base64")).join();
    let hit = this.#cache.get(key);
    if (!hit || now - hit.at > 60_000) {
      hit = { verdict: this.#trust.check(chain, now), at: now };
      if (this.#cache.size > 64) this.#cache.clear();
      this.#cache.set(key, hit);
    }
    return hit.verdict.ok ? undefined : describeVerdict(hit.verdict);
  }
}
