// What the ingest does with one MQTT message, decided without I/O: write it (as a line),
// drop it as a re-delivery, or refuse it with a reason. The order of checks matters:
// topic → envelope (encrypted fleets) → payload → device id vs topic → replay window.
import { SERVICE_IDENTITIES } from "../../../firmware/src/telemetry/vocabulary";
import { decodeTelemetryMessage } from "../../../firmware/src/payload/telemetry-message";
import type { DecodeMode } from "../../../firmware/src/payload/telemetry-message";
import { ReplayWindow } from "../../../firmware/src/payload/replay-window";
import { parseTopic } from "../../../firmware/src/telemetry/topics";
import { UNKNOWN_DEVICE } from "./account";
import { readingLine, statusLine, UNKNOWN_SITE } from "./line-protocol";

/** Reasons beyond the payload decoder's codes. */
export type IngestRejectReason = "invalid_topic" | "invalid_status" | "timestamp_out_of_range" | "unknown_device";

/**
 * Service identities. The broker's per-board ACL patterns apply to every certificate CN, so a
 * service could publish under its own name; the PKI refuses these as device ids
 * (RESERVED_SERVICE_NAMES), and the ingest refuses them as senders.
 */
export { SERVICE_IDENTITIES } from "../../../firmware/src/telemetry/vocabulary";

export type Outcome =
  | {
      kind: "write";
      sensorId: string;
      line: string;
      /** Device timestamp, for the end-to-end latency; undefined for status messages. */
      deviceTs?: number;
      /** Change in the device's count of missing sequence numbers. */
      gapDelta: number;
    }
  | { kind: "duplicate"; sensorId: string }
  | { kind: "rejected"; sensorId: string; reason: string; detail: string };

export interface ClassifierOptions {
  mode: DecodeMode;
  siteOf?: (sensorId: string) => string | undefined;
  window?: ReplayWindow;
  now?: () => number;
  /** Readings older than this are refused: the store would drop them silently (retention). */
  maxAgeMs?: number;
  /** Readings this far ahead of the ingest's clock are refused (a broken or forged device clock). */
  maxFutureMs?: number;
  /** When given (the fleet manifest's devices), anything else is refused as unknown_device. */
  isKnownDevice?: (sensorId: string) => boolean;
}

const DAY_MS = 86_400_000;

export class MessageClassifier {
  readonly #mode: DecodeMode;
  readonly #siteOf: (sensorId: string) => string | undefined;
  readonly #window: ReplayWindow;
  readonly #now: () => number;
  readonly #maxAgeMs: number;
  readonly #maxFutureMs: number;
  readonly #isKnownDevice: (sensorId: string) => boolean;

  constructor(o: ClassifierOptions) {
    this.#mode = o.mode;
    this.#siteOf = o.siteOf ?? (() => undefined);
    this.#window = o.window ?? new ReplayWindow();
    this.#now = o.now ?? Date.now;
    this.#maxAgeMs = o.maxAgeMs ?? 30 * DAY_MS;
    this.#maxFutureMs = o.maxFutureMs ?? 3_600_000;
    this.#isKnownDevice = o.isKnownDevice ?? (() => true);
  }

  classify(topic: string, payload: Uint8Array): Outcome {
    const parsed = parseTopic(topic);
    if (!parsed)
      return reject(UNKNOWN_DEVICE, "invalid_topic", `"${printable(topic)}" is not an electrolyser topic`);
    if (SERVICE_IDENTITIES.includes(parsed.sensorId) || !this.#isKnownDevice(parsed.sensorId))
      return reject(parsed.sensorId, "unknown_device", `"${parsed.sensorId}" is not a device of this fleet`);
    if (parsed.kind === "status") return this.#status(parsed.sensorId, payload);
    if (parsed.kind !== "telemetry")
      return reject(parsed.sensorId, "invalid_topic", `unexpected ${parsed.kind} topic`);

    const decoded = decodeTelemetryMessage(topic, payload, this.#mode);
    if (!decoded.ok) return reject(parsed.sensorId, decoded.error.code, decoded.error.message);
    const r = decoded.value;

    const now = this.#now();
    if (r.ts < now - this.#maxAgeMs || r.ts > now + this.#maxFutureMs)
      return reject(
        r.sensorId,
        "timestamp_out_of_range",
        `device timestamp ${r.ts} is outside the accepted window`,
      );

    const verdict = this.#window.check(r.sensorId, r.boot, r.seq);
    if (verdict === "duplicate") return { kind: "duplicate", sensorId: r.sensorId };
    if (verdict === "replay")
      return reject(r.sensorId, "replay", `boot ${r.boot} seq ${r.seq} is older than the replay window`);

    const prev = this.#window.latest(r.sensorId);
    let gapDelta = 0;
    if (prev && prev.boot === r.boot) {
      if (r.seq > prev.seq + 1) gapDelta = r.seq - prev.seq - 1;
      else if (r.seq < prev.seq) gapDelta = -1; // a late message fills a hole counted before
    }
    this.#window.commit(r.sensorId, r.boot, r.seq);
    return {
      kind: "write",
      sensorId: r.sensorId,
      line: readingLine(r, this.#siteOf(r.sensorId) ?? UNKNOWN_SITE),
      deviceTs: r.ts,
      gapDelta,
    };
  }

  #status(sensorId: string, payload: Uint8Array): Outcome {
    const online = parseStatus(payload);
    if (online === undefined)
      return reject(sensorId, "invalid_status", "status payload is not online/offline");
    return { kind: "write", sensorId, line: statusLine(sensorId, online, this.#now()), gapDelta: 0 };
  }
}

function reject(sensorId: string, reason: string, detail: string): Outcome {
  return { kind: "rejected", sensorId, reason, detail };
}

/** "online"/"offline", "1"/"0", or JSON {"online": bool} / {"status": "online"|"offline"}. */
export function parseStatus(payload: Uint8Array): boolean | undefined {
  if (payload.length === 0 || payload.length > 256) return undefined;
  const text = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString("utf8").trim();
  if (text === "online" || text === "1") return true;
  if (text === "offline" || text === "0") return false;
  try {
    const doc = JSON.parse(text) as unknown;
    if (typeof doc === "object" && doc !== null) {
      const o = doc as Record<string, unknown>;
      if (typeof o.online === "boolean") return o.online;
      if (o.status === "online") return true;
      if (o.status === "offline") return false;
    }
  } catch {
    // not JSON
  }
  return undefined;
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, "?").slice(0, 80);
}
