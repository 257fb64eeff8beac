// The retained status a board keeps on electrolyser/<id>/status: "online" with its counters, published
// on every connect, and the last will "offline" the broker publishes when the connection dies uncleanly.
// The firmware and every emulated board announce themselves with these same bytes. `cert` is the serial of
// the certificate the connection was accepted with (lowercase hex, as the PKI prints it): after a field
// rotation it tells the operator (`npm run trust -- finish --wait`) that the board switched.
import type { Outbox } from "../outbox/outbox";
import { encodeUtf8 } from "../util/utf8";

export function onlineStatus(o: {
  boot: number;
  fw: string;
  outbox: Outbox<unknown>;
  now: number;
  certSerial?: string;
}): ArrayBuffer {
  return json({
    online: true,
    boot: o.boot,
    fw: o.fw,
    queued: o.outbox.size,
    dropped: o.outbox.dropped,
    ts: o.now,
    ...(o.certSerial ? { cert: o.certSerial } : {}),
  });
}

export function offlineStatus(boot: number): ArrayBuffer {
  return json({ online: false, boot });
}

function json(value: unknown): ArrayBuffer {
  return encodeUtf8(JSON.stringify(value)).slice().buffer as ArrayBuffer;
}
