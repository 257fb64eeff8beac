// The retained status a board keeps on electrolyser/<id>/status: "online" with its counters, published
// on every connect, and the last will "offline" the broker publishes when the connection dies uncleanly.
// The firmware and every emulated board announce themselves with these same bytes.
import type { Outbox } from "../outbox/outbox";
import { encodeUtf8 } from "../util/utf8";

export function onlineStatus(o: {
  boot: number;
  fw: string;
  outbox: Outbox<unknown>;
  now: number;
}): ArrayBuffer {
  return json({
    online: true,
    boot: o.boot,
    fw: o.fw,
    queued: o.outbox.size,
    dropped: o.outbox.dropped,
    ts: o.now,
  });
}

export function offlineStatus(boot: number): ArrayBuffer {
  return json({ online: false, boot });
}

function json(value: unknown): ArrayBuffer {
  return encodeUtf8(JSON.stringify(value)).slice().buffer as ArrayBuffer;
}
