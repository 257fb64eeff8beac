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

/**
 * The chain the peer presented as Node verified it, leaf first (it may end with the local root). Through
 * X509Certificate handles, not getPeerCertificate(true): that one renders every certificate of the chain into a
 * JS object (names, extensions, three fingerprints) and was a third of the emulator's CPU while 5,000 boards
 * connected; the DER bytes are all the check needs.
 */
export function peerChain(socket: TLSSocket): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<string>();
  let cert: X509Certificate | undefined = socket.getPeerX509Certificate();
  while (cert && out.length < MAX_CHAIN) {
    const raw = cert.raw;
    const id = createHash("sha1").update(raw).digest("base64");
    if (seen.has(id)) break; // a self-signed root is its own issuer
    seen.add(id);
    out.push(new Uint8Array(raw));
    cert = cert.issuerCertificate;
  }
  return out;
}

/** Longer chains than this are not followed (the fleet's is leaf, intermediate, root). */
const MAX_CHAIN = 8;

/** The pins and trust anchor of one connection, as the board's TLS options carry them (MqttTlsOptions). */
export interface ConnectionTrust {
  caDer: ArrayBuffer;
  brokerPins: readonly ArrayBuffer[];
}

/**
 * A server check for a fleet of emulated boards, with the firmware's rule: each connection is checked against
 * the pins and anchor of the identity it connects with (the NVS slot in use, which a field rotation changes),
 * as firmware/ssl/certificate-manager.ts builds its BrokerTrust from the TLS session's options. One BrokerTrust
 * per distinct (anchor, pins) and one verdict per (pins, chain), refreshed every minute (validity depends on
 * the clock), since thousands of boards share the same pins and meet the same broker.
 */
export class BrokerCheck {
  readonly #trusts = new Map<string, BrokerTrust>();
  readonly #cache = new Map<string, { verdict: BrokerVerdict; at: number }>();
  /** The fleet shares one CA buffer: an id per buffer, not a hash of the CA at every connection. */
  readonly #anchors = new WeakMap<ArrayBuffer, number>();
  #anchorCount = 0;

  /** undefined when the server is the broker for `trust`'s pins, else the reason to refuse it. */
  refusal(socket: TLSSocket, trust: ConnectionTrust): string | undefined {
    const chain = peerChain(socket);
    const now = Date.now();
    const trustKey = this.#trustKey(trust);
    const key = `${trustKey}|${chain.map((c) => createHash("sha1").update(c).digest("base64")).join()}`;
    let hit = this.#cache.get(key);
    if (!hit || now - hit.at > 60_000) {
      const checker = this.#trustFor(trustKey, trust);
      // As the firmware: a connection without usable pins or anchor refuses every server.
      if (typeof checker === "string") return `broker refused: ${checker}`;
      hit = { verdict: checker.check(chain, now), at: now };
      if (this.#cache.size > 64) this.#cache.clear();
      this.#cache.set(key, hit);
    }
    return hit.verdict.ok ? undefined : describeVerdict(hit.verdict);
  }

  #trustKey(t: ConnectionTrust): string {
    let anchor = this.#anchors.get(t.caDer);
    if (anchor === undefined) {
      anchor = this.#anchorCount++;
      this.#anchors.set(t.caDer, anchor);
    }
    return `${anchor}:${t.brokerPins.map((p) => Buffer.from(p).toString("hex")).join(",")}`;
  }

  #trustFor(key: string, t: ConnectionTrust): BrokerTrust | string {
    let trust = this.#trusts.get(key);
    if (!trust) {
      if (t.brokerPins.length === 0) return "no broker pins or trust anchor were provisioned";
      try {
        trust = nodeBrokerTrust({
          pins: t.brokerPins.map((p) => new Uint8Array(p)),
          anchor: new Uint8Array(t.caDer),
        });
      } catch (e) {
        return e instanceof Error ? e.message : String(e);
      }
      if (this.#trusts.size > 64) this.#trusts.clear();
      this.#trusts.set(key, trust);
    }
    return trust;
  }
}
