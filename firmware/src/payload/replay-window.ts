// Per-device anti-replay on (boot, seq), in the style of IPsec's sliding window.
// At-least-once delivery re-sends messages, so a repeat inside the window is a
// "duplicate" (dropped quietly); anything older than the window or from an earlier
// boot cannot be told apart from an attacker's replay and is rejected as "replay".

export type ReplayVerdict = "new" | "duplicate" | "replay";

interface DeviceWindow {
  boot: number;
  maxSeq: number;
  bits: Uint32Array;
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
    const w = this.#devices.get(sensorId);
    if (!w || boot > w.boot) return "new";
    if (boot < w.boot) return "replay";
    if (seq > w.maxSeq) return "new";
    if (seq <= w.maxSeq - this.#size) return "replay";
    return this.#has(w, seq) ? "duplicate" : "new";
  }

  /** Records a message as accepted; call only after check() said "new". */
  commit(sensorId: string, boot: number, seq: number): void {
    let w = this.#devices.get(sensorId);
    if (!w || boot > w.boot) {
      w = { boot, maxSeq: seq, bits: new Uint32Array(this.#size / 32) };
      this.#devices.set(sensorId, w);
    } else if (boot < w.boot) {
      return;
    } else if (seq > w.maxSeq) {
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
  #has(w: DeviceWindow, seq: number): boolean {
    const [word, bit] = this.#slot(seq);
    return (w.bits[word]! & bit) !== 0;
  }
  #set(w: DeviceWindow, seq: number): void {
    const [word, bit] = this.#slot(seq);
    w.bits[word] = w.bits[word]! | bit;
  }
  #clear(w: DeviceWindow, seq: number): void {
    const [word, bit] = this.#slot(seq);
    w.bits[word] = w.bits[word]! & ~bit;
  }
}
