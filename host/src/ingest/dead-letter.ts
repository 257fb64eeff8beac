// Refused messages are kept, never stored: one JSON line each with the reason and the raw
// payload (base64), so an operator can see what a board or an attacker sent.
import { appendFile, mkdir, rename, stat } from "node:fs/promises";
import { dirname } from "node:path";

export interface DeadLetter {
  time: string;
  reason: string;
  detail: string;
  topic: string;
  sensor_id: string;
  payload_b64: string;
}

export interface DeadLetterSink {
  append(records: readonly DeadLetter[]): Promise<void>;
}

/** When the file passes maxBytes it becomes `<path>.1` (replacing an older one): disk use stays bounded. */
export function deadLetterFile(path: string, maxBytes = 64 * 1024 * 1024): DeadLetterSink {
  let size: number | undefined;
  let ready: Promise<void> | undefined;
  return {
    async append(records) {
      if (records.length === 0) return;
      ready ??= mkdir(dirname(path), { recursive: true, mode: 0o700 }).then(() => undefined);
      await ready;
      if (size === undefined)
        size = await stat(path).then(
          (s) => s.size,
          () => 0,
        );
      if (size > maxBytes) {
        await rename(path, `${path}.1`);
        size = 0;
      }
      const text = records.map((r) => JSON.stringify(r)).join("\n") + "\n";
      await appendFile(path, text, { mode: 0o600 });
      size += Buffer.byteLength(text);
    },
  };
}
