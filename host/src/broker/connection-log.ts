// What Mosquitto 2.0.11's own log says about connections, counted: connects and lost connections per
// identity, refused TLS handshakes by reason. Mosquitto exports none of this otherwise ($SYS has totals
// only), and it learns an identity only once the TLS handshake has passed: a refused handshake (foreign
// or revoked certificate, none at all) is logged as `Client <unknown>`, so refusals are counted by reason
// and not by identity. Pure: feed it log lines (the launcher's onLogLine), read the counts.
//
// Lines it reads (connection_messages true, the project's template), after the `<time>: ` prefix:
//   New client connected from 127.0.0.1:43930 as d-0001 (p2, c1, k60, u'd-0001').
//   Socket error on client d-0001, disconnecting.   Client d-0001 has exceeded timeout, disconnecting.
//   Client d-0001 disconnected, not authorised.
//   OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed
//   OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not return a certificate

export const REFUSAL_REASONS = [
  "certificate_rejected",
  "no_certificate",
  "handshake_aborted",
  "tls_error",
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export interface IdentityConnections {
  connects: number;
  /** Connections that ended without a DISCONNECT (socket error, keepalive timeout). */
  lost: number;
  /** CONNECTs refused after the handshake (not authorised). */
  refused: number;
}

const PREFIX = /^\S+: /;
const CONNECTED = /^New client connected from \S+ as (\S+) \(/;
const LOST =
  /^(?:Socket error on client (\S+), disconnecting\.|Client (\S+) has exceeded timeout, disconnecting\.)$/;
const NOT_AUTHORISED = /^Client (\S+) disconnected, not authori[sz]ed\.$/;
const OPENSSL = /^OpenSSL Error\[0\]: (.*)$/;

function refusalOf(error: string): RefusalReason {
  if (/certificate verify failed|certificate revoked|certificate expired|unknown ca/i.test(error))
    return "certificate_rejected";
  if (/did not return a certificate|certificate required/i.test(error)) return "no_certificate";
  if (/unexpected eof|connection reset/i.test(error)) return "handshake_aborted";
  return "tls_error";
}

export class BrokerConnectionLog {
  readonly #identities = new Map<string, IdentityConnections>();
  readonly #refused = new Map<RefusalReason, number>();

  #entry(id: string): IdentityConnections {
    let e = this.#identities.get(id);
    if (!e) {
      e = { connects: 0, lost: 0, refused: 0 };
      this.#identities.set(id, e);
    }
    return e;
  }

  feed(rawLine: string): void {
    const line = rawLine.replace(PREFIX, "");
    let m: RegExpExecArray | null;
    if ((m = CONNECTED.exec(line))) this.#entry(m[1]!).connects++;
    else if ((m = LOST.exec(line))) this.#entry((m[1] ?? m[2])!).lost++;
    else if ((m = NOT_AUTHORISED.exec(line))) this.#entry(m[1]!).refused++;
    else if ((m = OPENSSL.exec(line))) {
      // One handshake can log several OpenSSL errors; Mosquitto numbers them [0], [1], …: count [0] only.
      const reason = refusalOf(m[1]!);
      this.#refused.set(reason, (this.#refused.get(reason) ?? 0) + 1);
    }
  }

  identities(): [string, IdentityConnections][] {
    return [...this.#identities].map(([id, e]) => [id, { ...e }]);
  }

  /** Every reason, 0 included: the series exist from the start, so increase() sees the first refusal. */
  refused(): [RefusalReason, number][] {
    return REFUSAL_REASONS.map((r) => [r, this.#refused.get(r) ?? 0]);
  }
}
