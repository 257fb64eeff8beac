import { connect, type ConnectionOptions } from "node:tls";

export type HandshakeOutcome =
  { ok: true; protocol: string | null; cipher: string } | { ok: false; error: string };

/** A bare TLS handshake (no MQTT), to see what the server agrees to at the TLS layer. */
export function tlsHandshake(
  o: ConnectionOptions & { host: string; port: number },
): Promise<HandshakeOutcome> {
  return new Promise((resolve) => {
    const sock = connect({ servername: "localhost", ...o });
    const done = (r: HandshakeOutcome): void => {
      sock.removeAllListeners();
      sock.on("error", () => undefined);
      sock.destroy();
      resolve(r);
    };
    sock.setTimeout(5000, () => done({ ok: false, error: "timeout" }));
    sock.once("secureConnect", () => {
      const c = sock.getCipher();
      done({ ok: true, protocol: sock.getProtocol(), cipher: c.standardName ?? c.name });
    });
    sock.once("error", (err: NodeJS.ErrnoException) =>
      done({ ok: false, error: `${err.code ?? ""} ${err.message}`.trim() }),
    );
  });
}
