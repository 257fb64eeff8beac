// What the ingest does with one MQTT message, decided without I/O: write it (as a line),
// drop it as a re-delivery, or refuse it with a reason. The order of checks matters:
// topic → envelope (encrypted fleets) → payload → device id vs topic → replay window.
import { SERVICE_IDENTITIES } from "../../../firmware/src/telemetry/vocabulary";
import { decodeTelemetryMessage } from "../../../firmware/src/payload/telemetry-message";
import type { DecodeMode } from "../../../firmware/src/payload/telemetry-message";
import { ReplayWindow } from "../../../firmware/src/payload/replay-window";
import { parseTopic } from "../../../firmware/src/telemetry/topics";
import { UNKNOWN_DEVICE } from "./account";
import type { DeviceRateLimiter } from "./rate-limit";
import { readingLine, statusLine, UNKNOWN_SITE } from "./line-protocol";

/** Reasons beyond the payload decoder's codes. */
export type IngestRejectReason =
  | "invalid_topic"
  | "invalid_status"
  | "timestamp_out_of_range"
  | "timestamp_backwards"
  | "unknown_device"
  | "retained"
  | "rate_exceeded";

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
      /** The reading's place in its device's sequence: committed to the replay window once stored. */
      position?: ReadingPosition;
    }
  | { kind: "duplicate"; sensorId: string; position?: { boot: number; seq: number } }
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
  /**
   * History is append-only per boot: a new reading dated more than this before the latest timestamp its
   * boot has sent is refused as timestamp_backwards (default 2 s), so a board cannot overwrite its own
   * stored points (one point per series and timestamp) by re-dating new readings into the past. A late
   * reading (its seq below the boot's latest: a re-delivery) must fit the hole it fills: dated between
   * the readings either side of the hole when it opened, within the same tolerance.
   */
  backwardsToleranceMs?: number;
  /** Per-device allowance, spent before anything costly: a flooding board's excess is refused as rate_exceeded. */
  rateLimit?: DeviceRateLimiter;
}

export interface ReadingPosition {
  boot: number;
  seq: number;
}

/**
 * A hole in a boot's sequence as this ingest saw it open: seqs `from..to` skipped, between readings
 * dated `tsBefore` and `tsAfter`. NATS re-delivers an unacknowledged message only after its consumer's
 * AckWait (30 s), while newer ones flow at once; without the hole such a re-delivery looked like a
 * reading re-dated into the past and was refused: the restart losses of issue 18.
 */
interface Hole {
  from: number;
  to: number;
  tsBefore: number;
  tsAfter: number;
}

/** Holes remembered per device; beyond this the oldest is forgotten and a reading late for it is refused. */
export const MAX_HOLES_PER_DEVICE = 64;

/**
 * How far before the first reading this ingest saw of a boot a late one of that boot may be dated: well
 * beyond a consumer's AckWait (15–30 s) and a reconnect, short enough that a board cannot re-date readings
 * into much of the history stored before this ingest started.
 */
export const LATE_LOOKBACK_MS = 5 * 60_000;

interface BootClock {
  boot: number;
  maxTs: number;
  maxSeq: number;
  holes: Hole[];
}

/** Default slack for a device clock stepping back (an SNTP correction of jitter), in ms. */
export const BACKWARDS_TOLERANCE_MS = 2000;

const DAY_MS = 86_400_000;

export class MessageClassifier {
  readonly #mode: DecodeMode;
  readonly #siteOf: (sensorId: string) => string | undefined;
  readonly #window: ReplayWindow;
  readonly #now: () => number;
  readonly #maxAgeMs: number;
  readonly #maxFutureMs: number;
  readonly #isKnownDevice: (sensorId: string) => boolean;
  readonly #backwardsToleranceMs: number;
  readonly #rateLimit: DeviceRateLimiter | undefined;
  /** Per device: its latest boot, the highest timestamp and seq seen in it, the holes still open (bounded). */
  readonly #bootClock = new Map<string, BootClock>();
  /** Readings classified for writing and not yet stored or refused: at most the ingest's held messages. */
  readonly #inFlight = new Map<string, number>();

  constructor(o: ClassifierOptions) {
    this.#mode = o.mode;
    this.#siteOf = o.siteOf ?? (() => undefined);
    this.#window = o.window ?? new ReplayWindow();
    this.#now = o.now ?? Date.now;
    this.#maxAgeMs = o.maxAgeMs ?? 30 * DAY_MS;
    this.#maxFutureMs = o.maxFutureMs ?? 3_600_000;
    this.#isKnownDevice = o.isKnownDevice ?? (() => true);
    this.#backwardsToleranceMs = o.backwardsToleranceMs ?? BACKWARDS_TOLERANCE_MS;
    this.#rateLimit = o.rateLimit;
  }

  /** @param retained the publisher set RETAIN: fine for a status (the last will), refused for a reading. */
  classify(topic: string, payload: Uint8Array, retained = false): Outcome {
    const parsed = parseTopic(topic);
    if (!parsed)
      return reject(UNKNOWN_DEVICE, "invalid_topic", `"${printable(topic)}" is not an electrolyser topic`);
    if (SERVICE_IDENTITIES.includes(parsed.sensorId) || !this.#isKnownDevice(parsed.sensorId))
      return reject(parsed.sensorId, "unknown_device", `"${parsed.sensorId}" is not a device of this fleet`);
    // Before decryption and decoding, so a flood's excess costs the ingest next to nothing.
    if (this.#rateLimit && !this.#rateLimit.take(parsed.sensorId))
      return reject(
        parsed.sensorId,
        "rate_exceeded",
        `more than ${this.#rateLimit.limitOf(parsed.sensorId)} messages/s sustained`,
      );
    if (parsed.kind === "status") return this.#status(parsed.sensorId, payload);
    if (parsed.kind !== "telemetry")
      return reject(parsed.sensorId, "invalid_topic", `unexpected ${parsed.kind} topic`);
    // A retained reading is re-delivered at every subscribe (and to every new subscriber): never telemetry.
    if (retained) return reject(parsed.sensorId, "retained", "telemetry published with RETAIN");

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
    const key = positionKey(r.sensorId, r.boot, r.seq);
    if (verdict === "duplicate" || this.#inFlight.has(key))
      return { kind: "duplicate", sensorId: r.sensorId, position: { boot: r.boot, seq: r.seq } };
    if (verdict === "replay")
      return reject(r.sensorId, "replay", `boot ${r.boot} seq ${r.seq} is older than the replay window`);

    const clock = this.#bootClock.get(r.sensorId);
    if (!clock || r.boot > clock.boot)
      this.#bootClock.set(r.sensorId, {
        boot: r.boot,
        maxTs: r.ts,
        maxSeq: r.seq,
        // The first reading this ingest sees of a boot need not be its first: the ones before it may come
        // late (an ingest restart, another worker's share re-delivered), dated within LATE_LOOKBACK_MS before.
        holes:
          r.seq > 0
            ? [
                {
                  from: Math.max(0, r.seq - this.#window.size),
                  to: r.seq - 1,
                  tsBefore: r.ts - LATE_LOOKBACK_MS + this.#backwardsToleranceMs,
                  tsAfter: r.ts,
                },
              ]
            : [],
      });
    else if (r.boot === clock.boot) {
      const problem = this.#advanceClock(clock, r.seq, r.ts);
      if (problem) return reject(r.sensorId, "timestamp_backwards", `boot ${r.boot} seq ${r.seq} ${problem}`);
    }

    // Not committed here: the window records a reading only once the store accepted it (commit()).
    // Until then it is in flight, so a re-delivery meanwhile is not written twice.
    this.#inFlight.set(key, r.ts);
    return {
      kind: "write",
      sensorId: r.sensorId,
      line: readingLine(r, this.#siteOf(r.sensorId) ?? UNKNOWN_SITE),
      deviceTs: r.ts,
      position: { boot: r.boot, seq: r.seq },
    };
  }

  /**
   * Checks a reading against its boot's clock and records it; returns why it is refused, if it is. A newer
   * reading may not be dated back; a late one must fill a hole, dated between the hole's neighbours.
   */
  #advanceClock(clock: BootClock, seq: number, ts: number): string | undefined {
    const tol = this.#backwardsToleranceMs;
    if (seq > clock.maxSeq) {
      if (ts < clock.maxTs - tol)
        return `is dated ${clock.maxTs - ts} ms before the boot's latest reading (tolerance ${tol} ms)`;
      if (seq > clock.maxSeq + 1) {
        clock.holes.push({ from: clock.maxSeq + 1, to: seq - 1, tsBefore: clock.maxTs, tsAfter: ts });
        // Holes beyond the replay window can never be filled (the window refuses those seqs).
        const floor = seq - this.#window.size;
        while (
          clock.holes.length > 0 &&
          (clock.holes.length > MAX_HOLES_PER_DEVICE || clock.holes[0]!.to <= floor)
        )
          clock.holes.shift();
      }
      clock.maxSeq = seq;
      if (ts > clock.maxTs) clock.maxTs = ts;
      return undefined;
    }
    const i = clock.holes.findIndex((h) => h.from <= seq && seq <= h.to);
    const hole = clock.holes[i];
    if (!hole)
      return `arrives late (the boot is at seq ${clock.maxSeq}) and fills no hole this ingest saw open`;
    // The same tolerance as for a newer reading: a late one may be dated at most that far outside its hole.
    if (ts < hole.tsBefore - tol || ts > hole.tsAfter + tol)
      return `is dated outside the hole it fills (${hole.tsBefore}..${hole.tsAfter}, tolerance ${tol} ms)`;
    // The hole narrows around the reading, so a second reading cannot take the same place.
    const rest: Hole[] = [];
    if (seq > hole.from) rest.push({ from: hole.from, to: seq - 1, tsBefore: hole.tsBefore, tsAfter: ts });
    if (seq < hole.to) rest.push({ from: seq + 1, to: hole.to, tsBefore: ts, tsAfter: hole.tsAfter });
    clock.holes.splice(i, 1, ...rest);
    return undefined;
  }

  /** Records a stored reading in the replay window; returns the change in its device's gap count. */
  commit(sensorId: string, position: { boot: number; seq: number }): number {
    const { boot, seq } = position;
    this.#inFlight.delete(positionKey(sensorId, boot, seq));
    if (this.#window.check(sensorId, boot, seq) !== "new") return 0; // overtaken in flight by 4096 newer readings
    const prev = this.#window.latest(sensorId);
    let gapDelta = 0;
    if (prev && prev.boot === boot) {
      if (seq > prev.seq + 1) gapDelta = seq - prev.seq - 1;
      else if (seq < prev.seq) gapDelta = -1; // a late message fills a hole counted before
    }
    this.#window.commit(sensorId, boot, seq);
    return gapDelta;
  }

  /** A reading the store refused: it leaves the in-flight set without entering the window. */
  release(sensorId: string, position: ReadingPosition): void {
    const key = positionKey(sensorId, position.boot, position.seq);
    const ts = this.#inFlight.get(key);
    this.#inFlight.delete(key);
    // Its place stays open for the same reading: a one-seq hole dated as it was.
    const clock = this.#bootClock.get(sensorId);
    if (ts === undefined || !clock || clock.boot !== position.boot || position.seq > clock.maxSeq) return;
    const seq = position.seq;
    // A reconnect releases a lost connection's unwritten window (service.ts #dropStale), often a run of seqs per
    // device: a run becomes one hole, so the holes stay few and none is forgotten before its reading comes again.
    const next = clock.holes.find((h) => h.to === seq - 1 || h.from === seq + 1);
    if (next) {
      if (next.to === seq - 1) next.to = seq;
      else next.from = seq;
      next.tsBefore = Math.min(next.tsBefore, ts);
      next.tsAfter = Math.max(next.tsAfter, ts);
    } else clock.holes.push({ from: seq, to: seq, tsBefore: ts, tsAfter: ts });
  }

  #status(sensorId: string, payload: Uint8Array): Outcome {
    const online = parseStatus(payload);
    if (online === undefined)
      return reject(sensorId, "invalid_status", "status payload is not online/offline");
    return { kind: "write", sensorId, line: statusLine(sensorId, online, this.#now()) };
  }
}

function positionKey(sensorId: string, boot: number, seq: number): string {
  return `${sensorId}\u0000${boot}\u0000${seq}`;
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
