/**
 * What the MQTT session needs of the board's TLS identity: the credentials to connect with now, the serial of
 * their certificate (for the status message, so `npm run trust -- finish --wait` sees the switch), and, when
 * field rotation is on, the TrustRotationHandler behind them (../identity/trust-rotation.ts: it owns the two
 * NVS slots; the session only reports what each connection did). Platform-neutral: the firmware app and the
 * emulated boards build one of these and hand it to MqttSession.
 *
 * The MqttTlsOptions object is kept per identity and handed out unchanged until the identity changes: the
 * emulator caches a TLS context per object, and on the board it saves copying the DER at every reconnect.
 */
import type { TlsIdentity } from "../identity/nvs-layout";
import type { TrustOutcome, TrustRotationHandler } from "../identity/trust-rotation";
import { parseCertificate, serialHex } from "../tls/certificate";
import type { MqttTlsOptions } from "./mqtt-client";

export interface SessionIdentity {
  tls: MqttTlsOptions;
  /** Lowercase hex, as the PKI prints it; "" if the certificate does not parse (the broker will refuse it). */
  certSerial: string;
  /** A rotated identity being tried: its connection's outcome decides whether it stays. */
  trying: boolean;
}

export class SessionTrust {
  readonly #handler: TrustRotationHandler | null;
  readonly #fixed: TlsIdentity | null;
  #cached: SessionIdentity | undefined;

  /** With a handler: rotation over down/trust. With an identity only: fixed credentials, rotation refused. */
  constructor(o: { handler: TrustRotationHandler } | { tls: TlsIdentity }) {
    this.#handler = "handler" in o ? o.handler : null;
    this.#fixed = "tls" in o ? o.tls : null;
  }

  get rotates(): boolean {
    return this.#handler !== null;
  }

  /** The identity to connect with now: the slot being tried if any, else the one in use. */
  current(): SessionIdentity {
    const c = this.#handler ? this.#handler.connection() : { tls: this.#fixed!, trying: false };
    const k = this.#cached;
    // TrustSlots reads the slot from NVS at each call (new arrays, same bytes): compare the bytes.
    if (k && sameIdentity(k.tls, c.tls)) {
      if (k.trying !== c.trying) this.#cached = { ...k, trying: c.trying };
      return this.#cached!;
    }
    this.#cached = { tls: tlsBuffers(c.tls), certSerial: serialOf(c.tls.certDer), trying: c.trying };
    return this.#cached;
  }

  /** A message on down/trust; only with a handler (`rotates`): the session ignores them otherwise. */
  handle(payload: Uint8Array): TrustOutcome {
    if (!this.#handler) return { ok: true, action: "none", why: "cleared" };
    return this.#handler.handle(payload);
  }

  /** CONNACK accepted with `current()`. */
  connected(): void {
    this.#handler?.connected();
  }

  /** TLS handshake or CONNACK refused with `current()`. */
  failed(): void {
    this.#handler?.failed();
  }
}

function sameIdentity(a: MqttTlsOptions, b: TlsIdentity): boolean {
  return (
    sameBuffer(a.certDer, b.certDer) &&
    sameBuffer(a.keyDer, b.keyDer) &&
    sameBuffer(a.caDer, b.caDer) &&
    a.brokerPins.length === b.brokerPins.length &&
    a.brokerPins.every((p, i) => sameBuffer(p, b.brokerPins[i]!))
  );
}

function sameBuffer(a: ArrayBuffer, b: Uint8Array): boolean {
  if (a.byteLength !== b.length) return false;
  const x = new Uint8Array(a);
  for (let i = 0; i < x.length; i++) if (x[i] !== b[i]) return false;
  return true;
}

function serialOf(certDer: Uint8Array): string {
  try {
    return serialHex(parseCertificate(certDer));
  } catch {
    return "";
  }
}

/** The bytes as an ArrayBuffer of their own: the view's buffer when it is exactly that, else a copy. */
function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  // Not copied when it need not be: an emulated board's CA and pins are one buffer for the whole fleet, and a
  // copy per board and connection was ~2 KB a board. Nothing writes into these (the client only reads them).
  if (
    bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength &&
    bytes.buffer instanceof ArrayBuffer
  )
    return bytes.buffer;
  return bytes.slice().buffer as ArrayBuffer;
}

export function tlsBuffers(tls: TlsIdentity): MqttTlsOptions {
  return {
    caDer: toArrayBuffer(tls.caDer),
    certDer: toArrayBuffer(tls.certDer),
    keyDer: toArrayBuffer(tls.keyDer),
    brokerPins: tls.brokerPins.map(toArrayBuffer),
  };
}
