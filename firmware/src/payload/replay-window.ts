// Per-device anti-replay on (boot, seq), in the style of IPsec's sliding window.
// At-least-once delivery re-sends messages, so a repeat inside the window is a
// "duplicate" (dropped quietly); anything older than the window, or from a boot before
// the previous one, cannot be told apart from an attacker's replay and is rejected as "replay".
// The previous boot keeps its own window: a board that rebooted (a power cut) sends the
// readings its flash ring kept from that boot, with their original boot and seq, possibly
// after readings of the new boot; they are accepted once each, like any late reading.

export type ReplayVerdict = "new" | "duplicate" | "replay";

interface BootWindow {
  boot: number;
  maxSeq: number;
  bits: Uint32Array;
}

interface DeviceWindow extends BootWindow {
  /** The boot before, while its readings may still come (replayed from the board's flash). */
  prev: BootWindow | undefined;
}

export class ReplayWindow {
  readonly #size: number;
  readonly #devices = new Map<string, DeviceWindow>();

  constructor(options: { size?: number } = {}) {
    const size = options.size ?? 4096;
    if (!Number.isInteger(size) || size < 32 || size % 32 !== 0)
      throw new RangeError("window size must be a positive multiple of 32");
    this.#size = size;
  }

  get size(): number {
    return this.#size;
  }

  check(sensorId: string, boot: number, seq: number): ReplayVerdict {
    const d = this.#devices.get(sensorId);
    if (!d || boot > d.boot) return "new";
    if (boot < d.boot && !d.prev) return "new"; // the boot before, first seen after the new one
    const w = boot === d.boot ? d : d.prev && boot === d.prev.boot ? d.prev : undefined;
    if (!w) return "replay";
    if (seq > w.maxSeq) return "new";
    if (seq <= w.maxSeq - this.#size) return "replay";
    return this.#has(w, seq) ? "duplicate" : "new";
  }

  /** Records a message as accepted; call only after check() said "new". */
  commit(sensorId: string, boot: number, seq: number): void {
    const d = this.#devices.get(sensorId);
    let w: BootWindow | undefined;
    if (!d || boot > d.boot) {
      const prev: BootWindow | undefined = d ? { boot: d.boot, maxSeq: d.maxSeq, bits: d.bits } : undefined;
      const fresh: DeviceWindow = { boot, maxSeq: seq, bits: new Uint32Array(this.#size / 32), prev };
      this.#devices.set(sensorId, fresh);
      w = fresh;
    } else if (boot === d.boot) w = d;
    else if (d.prev && boot === d.prev.boot) w = d.prev;
    else if (!d.prev) {
      // The first reading this window sees of the boot before (the new boot's came first).
      d.prev = { boot, maxSeq: seq, bits: new Uint32Array(this.#size / 32) };
      w = d.prev;
    } else return;
    if (seq > w.maxSeq) {
      const advance = seq - w.maxSeq;
      if (advance >= this.#size) w.bits.fill(0);
      else for (let s = w.maxSeq + 1; s < seq; s++) this.#clear(w, s);
      w.maxSeq = seq;
    } else if (seq <= w.maxSeq - this.#size) {
      return;
    }
    this.#set(w, seq);
  }

  /** The highest (boot, seq) accepted for a device, if any. */
  latest(sensorId: string): { boot: number; seq: number } | undefined {
    const w = this.#devices.get(sensorId);
    return w ? { boot: w.boot, seq: w.maxSeq } : undefined;
  }

  #slot(seq: number): [number, number] {
    const i = seq % this.#size;
    return [i >>> 5, 1 << (i & 31)];
  }
  #has(w: BootWindow, seq: number): boolean {
    const [word, bit] = this.#slot(seq);
    return (w.bits[word]! & bit) !== 0;
  }
  #set(w: BootWindow, seq: number): void {
    const [word, bit] = this.#slot(seq);
    w.bits[word] = w.bits[word]! | bit;
  }
  #clear(w: BootWindow, seq: number): void {
    const [word, bit] = this.#slot(seq);
    w.bits[word] = w.bits[word]! & ~bit;
  }
}
