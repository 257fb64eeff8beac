/** Counters the boards bump and the live view and report read. */
import { Histogram } from "./histogram";

export class FleetStats {
  connected = 0;
  /** CONNACKs with return code 0, first connections and reconnections. */
  connects = 0;
  /** Connections that closed before TLS completed (refused certificate, timeout, reset). */
  handshakeFailures = 0;
  /** Connections that closed after TLS but before an accepting CONNACK. */
  connectFailures = 0;
  /** Established connections that were lost (network drop, broker restart...). */
  disconnects = 0;
  /** Readings made (enqueued in an outbox). */
  readings = 0;
  /** PUBLISH packets written, resends included. */
  publishes = 0;
  resends = 0;
  acked = 0;
  /** Readings dropped on a board because its outbox was full. */
  outboxDropped = 0;
  faultsInjected = 0;
  readonly pubackLatency = new Histogram();
  /** Set once every board is connected and its backlog is sent: the steady-state figures start then. */
  steady = false;
  readonly pubackSteady = new Histogram();
  /** PUBACK latency since the live view last looked. */
  readonly pubackWindow = new Histogram();
  readonly connectLatency = new Histogram();
}
