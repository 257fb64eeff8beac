// Refused messages are kept, never stored: one JSON line each with the reason and the raw
// payload (base64), so an operator can see what a board or an attacker sent.
//
// Evidence survives a flood: the file keeps the first `keepPerKey` refused messages of each
// (device, reason) in full; beyond that a board's messages of that reason are counted, and each
// append that suppressed some writes one summary line per (device, reason) with the running count.
// A flooding board therefore adds a few summary lines per batch instead of rotating the first
// (often most telling) records of every other board out of the file. Every refused message is
// still counted in the account and the metrics; only the payloads past the first ones are not kept.
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

/** Written instead of the records of a (device, reason) past its first `keepPerKey`. */
export interface SuppressedDeadLetters {
  time: string;
  reason: string;
  sensor_id: string;
  /** Records of this (device, reason) not kept in full since the ingest started. */
  suppressed: number;
  /** How many were kept in full before suppression began. */
  kept: number;
}

export interface DeadLetterSink {
  append(records: readonly DeadLetter[]): Promise<void>;
}

/**
 * @param maxBytes when the file passes this size it becomes `<path>.1` (replacing an older one): disk use stays bounded.
 * @param keepPerKey full records kept per (device, reason) since the ingest started.
 */
export function deadLetterFile(path: string, maxBytes = 64 * 1024 * 1024, keepPerKey = 1000): DeadLetterSink {
  // One entry per (device, reason) seen: bounded by the fleet's devices times the reasons.
  const seen = new Map<string, { kept: number; suppressed: number }>();
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
      const lines: string[] = [];
      const suppressedNow = new Map<string, SuppressedDeadLetters>();
      const counts = new Map<string, { kept: number; suppressed: number }>();
      for (const r of records) {
        const key = `${r.sensor_id}\u0000${r.reason}`;
        const c = counts.get(key) ?? { ...(seen.get(key) ?? { kept: 0, suppressed: 0 }) };
        counts.set(key, c);
        if (c.kept < keepPerKey) {
          c.kept++;
          lines.push(JSON.stringify(r));
        } else {
          c.suppressed++;
          suppressedNow.set(key, {
            time: r.time,
            reason: r.reason,
            sensor_id: r.sensor_id,
            suppressed: c.suppressed,
            kept: c.kept,
          });
        }
      }
      for (const s of suppressedNow.values()) lines.push(JSON.stringify(s));
      const text = lines.join("\n") + "\n";
      await appendFile(path, text, { mode: 0o600 });
      // Counted only once the lines are on disk: a failed append is retried with the same records.
      for (const [key, c] of counts) seen.set(key, c);
      size += Buffer.byteLength(text);
    },
  };
}
