import { connect } from "node:tls";

/**
 * One TLS handshake attempt. Resolves once the server has presented a certificate that
 * chains to `ca`. No client certificate is sent: under TLS 1.3 the client's handshake
 * completes before the server refuses it, which is enough to know the listener is up and
 * serving the expected identity. The host name is not checked here; clients do that.
 */
export function probeTls(host: string, port: number, ca: string | Buffer, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host,
      port,
      ca,
      minVersion: "TLSv1.3",
      checkServerIdentity: () => undefined,
      timeout: timeoutMs,
    });
    const done = (err?: Error): void => {
      socket.removeAllListeners();
      socket.on("error", () => undefined);
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    socket.once("secureConnect", () => done());
    socket.once("error", (err) => done(err));
    socket.once("timeout", () => done(new Error(`TLS handshake with ${host}:${port} timed out`)));
  });
}

/** Retries probeTls until it succeeds, `isDead()` reports the server gone, or the deadline passes. */
export async function waitForTls(o: {
  host: string;
  port: number;
  ca: string | Buffer;
  timeoutMs: number;
  isDead?: () => boolean;
}): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (o.isDead?.()) throw new Error("the broker exited before its TLS listener accepted connections");
    try {
      await probeTls(o.host, o.port, o.ca, Math.max(100, Math.min(2000, deadline - Date.now())));
      return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const why = last instanceof Error ? last.message : String(last);
  throw new Error(
    `TLS listener ${o.host}:${o.port} did not accept within ${o.timeoutMs} ms (last error: ${why})`,
  );
}
