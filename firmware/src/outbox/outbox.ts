// The MQTT outbox: every reading waits here, in sequence order, until the broker's PUBACK
// for it arrives. Neither Moddable's MQTT client nor a socket keeps anything across a
// reconnect, so this queue is what makes delivery at-least-once. It is bounded because a
// board has tens of kilobytes of RAM: when full, the oldest reading is dropped and counted,
// and the count is reported so the loss is visible rather than silent.

export interface OutboxEntry<T> {
  readonly seq: number;
  readonly item: T;
  /** How many times this entry has been handed out for sending. */
  attempts: number;
}

interface Slot<T> extends OutboxEntry<T> {
  inflight: boolean;
}

export class Outbox<T> {
  readonly #capacity: number;
  #nextSeq: number;
  #queue: Slot<T>[] = [];
  #dropped = 0;
  #inflight = 0;

  constructor(options: { capacity: number; firstSeq?: number }) {
    if (!Number.isInteger(options.capacity) || options.capacity < 1)
      throw new RangeError("outbox capacity must be a positive integer");
    this.#capacity = options.capacity;
    this.#nextSeq = options.firstSeq ?? 0;
  }

  get size(): number {
    return this.#queue.length;
  }
  get capacity(): number {
    return this.#capacity;
  }
  get dropped(): number {
    return this.#dropped;
  }
  get inflight(): number {
    return this.#inflight;
  }
  /** The sequence number the next enqueue will get. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** Assigns the next sequence number and queues what `make` builds with it. */
  enqueue(make: (seq: number) => T): OutboxEntry<T> {
    const seq = this.#nextSeq++;
    const slot: Slot<T> = { seq, item: make(seq), attempts: 0, inflight: false };
    if (this.#queue.length >= this.#capacity) {
      const oldest = this.#queue.shift()!;
      if (oldest.inflight) this.#inflight--;
      this.#dropped++;
    }
    this.#queue.push(slot);
    return slot;
  }

  /**
   * The next entries to publish, oldest first, so that at most `maxInflight` are
   * unacknowledged at once. Entries handed out stay queued until ack().
   */
  takeSendable(maxInflight: number): OutboxEntry<T>[] {
    const out: OutboxEntry<T>[] = [];
    for (const slot of this.#queue) {
      if (this.#inflight >= maxInflight) break;
      if (slot.inflight) continue;
      slot.inflight = true;
      slot.attempts++;
      this.#inflight++;
      out.push(slot);
    }
    return out;
  }

  /** The PUBACK for `seq` arrived. False for an unknown seq (already acked or dropped). */
  ack(seq: number): boolean {
    const i = this.#indexOf(seq);
    if (i < 0) return false;
    const [slot] = this.#queue.splice(i, 1);
    if (slot!.inflight) this.#inflight--;
    return true;
  }

  /** The connection is gone: nothing is in flight any more and everything unacked goes again, in order. */
  connectionLost(): void {
    for (const slot of this.#queue) slot.inflight = false;
    this.#inflight = 0;
  }

  /** Unacknowledged entries in order (for reporting and tests). */
  pending(): readonly OutboxEntry<T>[] {
    return this.#queue;
  }

  #indexOf(seq: number): number {
    // Sequence numbers are strictly increasing along the queue: binary search.
    let lo = 0;
    let hi = this.#queue.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.#queue[mid]!.seq;
      if (s === seq) return mid;
      if (s < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
}
