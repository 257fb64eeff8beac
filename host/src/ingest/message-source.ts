// What the ingest's write path needs from where messages come from: held messages and a way to acknowledge
// them after the store wrote them. MQTT (HeldAckReceiver, held-acks.ts) and JetStream pull consumers
// (jetstream-source.ts) both provide it.
import type { HeldMessage } from "./held-acks";

export interface AckReceiver {
  /** Messages delivered and not yet acknowledged. */
  readonly held: number;
  /** Which connection delivered the newest messages (acks of an older one are not sent). */
  readonly connection: number;
  /** Runs a batch of acks at once (MQTT: one corked socket write). */
  batch(acks: () => void): void;
  /** Acknowledges; false when it can no longer be (the broker delivers the message again). */
  ack(m: HeldMessage): boolean;
  /** Forgets a message without acknowledging it; the broker keeps it. */
  abandon(m: HeldMessage): void;
}

/** A source the ingest does not build itself (the JetStream workers): it starts and stops it. */
export interface MessageSource extends AckReceiver {
  readonly connected: boolean;
  start(onMessage: (m: HeldMessage) => void): Promise<void>;
  stop(): Promise<void>;
  /**
   * Publishes a downlink message (a confirmation) to a board, at most once: false when it cannot now (the next
   * confirmation round sends it again). Absent: the source cannot reach the boards.
   */
  publishDownlink?(topic: string, payload: Uint8Array): boolean;
}
