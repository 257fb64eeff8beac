import { describe, expect, it } from "vitest";
import { BrokerConnectionLog } from "../../src/broker/connection-log";
import { brokerConnectionLines } from "../../src/store/broker-connections";

// Lines as Debian's Mosquitto 2.0.11 wrote them for: a foreign CA's certificate, no certificate, a client
// hanging up mid-handshake, a good board, a board losing its link, and a keepalive timeout.
const LOG = `2026-12-02T14:31:19: New connection from 127.0.0.1:43918 on port 38533.
2026-12-02T14:31:19: OpenSSL Error[0]: error:0A000126:SSL routines::unexpected eof while reading
2026-12-02T14:31:19: Client <unknown> disconnected: Protocol error.
2026-12-02T14:31:19: New connection from 127.0.0.1:43930 on port 38533.
2026-12-02T14:31:19: New client connected from 127.0.0.1:43930 as d-0001 (p2, c1, k60, u'd-0001').
2026-12-02T14:31:19: Client d-0001 disconnected.
2026-12-02T14:31:19: New connection from 127.0.0.1:43936 on port 38533.
2026-12-02T14:31:19: OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed
2026-12-02T14:31:19: OpenSSL Error[1]: error:0A000086:SSL routines::certificate verify failed
2026-12-02T14:31:19: Client <unknown> disconnected: Protocol error.
2026-12-02T14:31:19: New connection from 127.0.0.1:43944 on port 38533.
2026-12-02T14:31:19: OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not return a certificate
2026-12-02T14:31:20: New client connected from 127.0.0.1:43950 as d-0001 (p2, c1, k60, u'd-0001').
2026-12-02T14:31:21: Socket error on client d-0001, disconnecting.
2026-12-02T14:31:25: Client d-0002 has exceeded timeout, disconnecting.
2026-12-02T14:31:26: Client d-0003 disconnected, not authorised.`;

describe("the broker's connection log", () => {
  it("counts connects and lost connections per identity and refused handshakes by reason", () => {
    const log = new BrokerConnectionLog();
    for (const line of LOG.split("\n")) log.feed(line);
    expect(Object.fromEntries(log.identities())).toEqual({
      "d-0001": { connects: 2, lost: 1, refused: 0 },
      "d-0002": { connects: 0, lost: 1, refused: 0 },
      "d-0003": { connects: 0, lost: 0, refused: 1 },
    });
    expect(Object.fromEntries(log.refused())).toEqual({
      certificate_rejected: 1,
      no_certificate: 1,
      handshake_aborted: 1,
      tls_error: 0,
    });
  });

  it("writes them as line protocol, identities escaped, every reason present", () => {
    const log = new BrokerConnectionLog();
    log.feed("2026-12-02T14:31:20: New client connected from 127.0.0.1:1 as a=b (p2, c1, k60, u'a=b').");
    expect(brokerConnectionLines(log, 1000)).toEqual([
      "broker_connections,client_id=a\\=b connects=1i,lost=0i,refused=0i 1000",
      "broker_refused,reason=certificate_rejected count=0i 1000",
      "broker_refused,reason=no_certificate count=0i 1000",
      "broker_refused,reason=handshake_aborted count=0i 1000",
      "broker_refused,reason=tls_error count=0i 1000",
    ]);
  });
});
