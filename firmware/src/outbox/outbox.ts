// The MQTT outbox: every reading waits here, in sequence order, until it may be forgotten. Neither Moddable's
// MQTT client nor a socket keeps anything across a reconnect, so this queue is what makes delivery
// at-least-once. A reading is forgotten on the broker's PUBACK, or, with end-to-end confirmations
// (../telemetry/confirmation), only once the ingest says the store holds it durably: between the two it is
// "delivered" and goes again if the confirmation does not come (the broker may have lost it in a crash).
// It is bounded because a board has tens of kilobytes of RAM: when full, the oldest reading is dropped and
// counted, and the count is reported so the loss is visible rather than silent.

import type { SeqRange } from "../telemetry/confirmation";
import { rangesContain } from "../telemetry/confirmation";

export interface OutboxEntry<T> {
  readonly seq: number;
  readonly item: T;
  /** How many times this entry has been handed out for sending. */
  attempts: number;
}

/** queued: to send; inflight: sent, PUBACK awaited; delivered: PUBACKed, store confirmation awaited. */
type SlotState = 0 | 1 | 2;
const QUEUED: SlotState = 0;
const INFLIGHT: SlotState = 1;
const DELIVERED: SlotState = 2;

/**
 * Persistence hook (./outbox-journal.ts keeps the readings in a flash ring through it): told when an entry is
 * queued, before it can be handed out for sending, and when the outbox forgets one, with why. "dropped": the
 * outbox was full (the journal may still hold it); the others mean it may be forgotten for good.
 */
export interface OutboxObserver<T> {
  queued(entry: OutboxEntry<T>): void;
  forgotten(entry: OutboxEntry<T>, why: "acked" | "confirmed" | "released" | "dropped"): void;
  /** An ack, confirmation or release that forgot entries has finished: room may be free (restore is safe). */
  freed(): void;
}

interface Slot<T> extends OutboxEntry<T> {
  state: SlotState;
  /** When the PUBACK came (the caller's clock), for the confirmation timeout. */
  deliveredAt: number;
}

export class Outbox<T> {
  readonly #capacity: number;
  #nextSeq: number;
  #queue: Slot<T>[] = [];
  #dropped = 0;
  #droppedDelivered = 0;
  #inflight = 0;
  #delivered = 0;
  /** No queued slot sits before this index (a hint that keeps finding the next one to send cheap). */
  #cursor = 0;
  #observer: OutboxObserver<T> | undefined;

  constructor(options: { capacity: number; firstSeq?: number }) {
    if (!Number.isInteger(options.capacity) || options.capacity < 1)
      throw new RangeError("outbox capacity must be a positive integer");
    this.#capacity = options.capacity;
    this.#nextSeq = options.firstSeq ?? 0;
  }

  /** Sets (or clears) the persistence hook. */
  observe(observer: OutboxObserver<T> | undefined): void {
    this.#observer = observer;
  }

  get size(): number {
    return this.#queue.length;
  }
  get capacity(): number {
    return this.#capacity;
  }
  /** Readings dropped because the outbox was full (delivered ones included). */
  get dropped(): number {
    return this.#dropped;
  }
  /** Of those, readings the broker had PUBACKed: not lost for sure, but no longer guarded by the board. */
  get droppedDelivered(): number {
    return this.#droppedDelivered;
  }
  get inflight(): number {
    return this.#inflight;
  }
  /** PUBACKed and kept until the store confirms them. */
  get delivered(): number {
    return this.#delivered;
  }
  /** The sequence number the next enqueue will get. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** Assigns the next sequence number and queues what `make` builds with it. */
  enqueue(make: (seq: number) => T): OutboxEntry<T> {
    const seq = this.#nextSeq++;
    const slot: Slot<T> = { seq, item: make(seq), attempts: 0, state: QUEUED, deliveredAt: 0 };
    if (this.#queue.length >= this.#capacity) {
      const oldest = this.#queue.shift()!;
      this.#forget(oldest);
      if (this.#cursor > 0) this.#cursor--;
      this.#dropped++;
      if (oldest.state === DELIVERED) this.#droppedDelivered++;
      this.#observer?.forgotten(oldest, "dropped");
    }
    this.#queue.push(slot);
    this.#observer?.queued(slot);
    return slot;
  }

  /**
   * Puts back an entry the outbox had dropped or never held (a reading still in the flash ring, see
   * ./outbox-journal.ts) with its own `seq`, below `nextSeq` and not held now, in order, waiting to be sent.
   * Only into free room: nothing is dropped for it. Undefined when full or the seq is not free.
   */
  restore(seq: number, item: T): OutboxEntry<T> | undefined {
    if (this.#queue.length >= this.#capacity || !Number.isInteger(seq) || seq >= this.#nextSeq)
      return undefined;
    let lo = 0;
    let hi = this.#queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#queue[mid]!.seq < seq) lo = mid + 1;
      else hi = mid;
    }
    if (this.#queue[lo]?.seq === seq) return undefined;
    const slot: Slot<T> = { seq, item, attempts: 0, state: QUEUED, deliveredAt: 0 };
    this.#queue.splice(lo, 0, slot);
    if (lo < this.#cursor) this.#cursor = lo;
    return slot;
  }

  /** The oldest entry waiting to be sent (not in flight, not delivered), without taking it. */
  peekSendable(): OutboxEntry<T> | undefined {
    const q = this.#queue;
    while (this.#cursor < q.length && q[this.#cursor]!.state !== QUEUED) this.#cursor++;
    return q[this.#cursor];
  }

  /** Hands out the oldest entry waiting to be sent; it stays queued until acked, delivered or confirmed. */
  takeNext(): OutboxEntry<T> | undefined {
    const slot = this.peekSendable() as Slot<T> | undefined;
    if (!slot) return undefined;
    slot.state = INFLIGHT;
    slot.attempts++;
    this.#inflight++;
    this.#cursor++;
    return slot;
  }

  /** The next entries to publish, oldest first, so that at most `maxInflight` are unacknowledged at once. */
  takeSendable(maxInflight: number): OutboxEntry<T>[] {
    const out: OutboxEntry<T>[] = [];
    while (this.#inflight < maxInflight) {
      const e = this.takeNext();
      if (!e) break;
      out.push(e);
    }
    return out;
  }

  /** The PUBACK for `seq` arrived and that is enough: forget it. False for an unknown seq. */
  ack(seq: number): boolean {
    const i = this.#indexOf(seq);
    if (i < 0) return false;
    const slot = this.#removeAt(i);
    this.#observer?.forgotten(slot, "acked");
    this.#observer?.freed();
    return true;
  }

  /**
   * The PUBACK for `seq` arrived; keep the entry until the store confirms it. False for an unknown seq (dropped,
   * or already confirmed: a confirmation can overtake the PUBACK) or one not in flight.
   */
  markDelivered(seq: number, atMs: number): boolean {
    const i = this.#indexOf(seq);
    if (i < 0) return false;
    const slot = this.#queue[i]!;
    if (slot.state !== INFLIGHT) return false;
    slot.state = DELIVERED;
    slot.deliveredAt = atMs;
    this.#inflight--;
    this.#delivered++;
    return true;
  }

  /**
   * The store holds these seqs durably: forget them, whatever their state (a confirmation may come before the
   * PUBACK, or for a reading queued again for a resend). Returns how many entries it removed.
   */
  confirm(ranges: readonly SeqRange[]): number {
    if (ranges.length === 0 || this.#queue.length === 0) return 0;
    const kept: Slot<T>[] = [];
    let removed = 0;
    for (const slot of this.#queue) {
      if (rangesContain(ranges, slot.seq)) {
        this.#forget(slot);
        removed++;
        this.#observer?.forgotten(slot, "confirmed");
      } else kept.push(slot);
    }
    if (removed > 0) {
      this.#queue = kept;
      this.#cursor = 0;
      this.#observer?.freed();
    }
    return removed;
  }

  /** Delivered entries go again, in order, ahead of anything not yet sent. Returns how many. */
  requeueDelivered(): number {
    if (this.#delivered === 0) return 0;
    let n = 0;
    for (const slot of this.#queue)
      if (slot.state === DELIVERED) {
        slot.state = QUEUED;
        n++;
      }
    this.#delivered = 0;
    this.#cursor = 0;
    return n;
  }

  /** Falls back to PUBACK semantics: forgets every delivered entry. Returns how many. */
  releaseDelivered(): number {
    if (this.#delivered === 0) return 0;
    const n = this.#delivered;
    const observer = this.#observer;
    if (observer) for (const s of this.#queue) if (s.state === DELIVERED) observer.forgotten(s, "released");
    this.#queue = this.#queue.filter((s) => s.state !== DELIVERED);
    this.#delivered = 0;
    this.#cursor = 0;
    observer?.freed();
    return n;
  }

  /** When the oldest delivered entry got its PUBACK; undefined when none waits for a confirmation. */
  oldestDeliveredAt(): number | undefined {
    if (this.#delivered === 0) return undefined;
    let oldest: number | undefined;
    for (const slot of this.#queue)
      if (slot.state === DELIVERED && (oldest === undefined || slot.deliveredAt < oldest))
        oldest = slot.deliveredAt;
    return oldest;
  }

  /** The connection is gone: nothing is in flight any more and everything in flight goes again, in order. */
  connectionLost(): void {
    for (const slot of this.#queue) if (slot.state === INFLIGHT) slot.state = QUEUED;
    this.#inflight = 0;
    this.#cursor = 0;
  }

  /** Every entry still held, in order (for reporting and tests). */
  pending(): readonly OutboxEntry<T>[] {
    return this.#queue;
  }

  #forget(slot: Slot<T>): void {
    if (slot.state === INFLIGHT) this.#inflight--;
    else if (slot.state === DELIVERED) this.#delivered--;
  }

  #removeAt(i: number): Slot<T> {
    const [slot] = this.#queue.splice(i, 1);
    this.#forget(slot!);
    if (i < this.#cursor) this.#cursor--;
    return slot!;
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
