// The fleet's names in one place: the topic filters services subscribe with, the service identities
// that share the certificate-CN namespace with devices, and how a fleet's device ids are generated.
// Topic builders for one device are in ./topics; this module is the rest of the vocabulary.
import { TOPIC_ROOT } from "./topics";

/** Every board's telemetry and status (MQTT single-level wildcard over the device id). */
export const TELEMETRY_FILTER = `${TOPIC_ROOT}/+/telemetry`;
export const STATUS_FILTER = `${TOPIC_ROOT}/+/status`;

/** A shared subscription (MQTT 5 / Mosquitto `$share/<group>/<filter>`): the group's members split the messages. */
export function sharedFilter(group: string, filter: string): string {
  return `$share/${group}/${filter}`;
}

export const INGEST_IDENTITY = "ingest";
/** The read-only observer identity of infra/mosquitto/acl.template. */
export const MONITOR_IDENTITY = "monitor";
/** The operator identity that alone writes boards' trust and config messages (electrolyser/<id>/down/trust). */
export const FLEET_ADMIN_IDENTITY = "fleet-admin";

/**
 * CNs the broker's ACL grants fleet-wide rights (infra/mosquitto/acl.template). The broker's per-board
 * patterns apply to every CN, so a device named like a service would read every board's telemetry and a
 * service could publish as a board: the PKI refuses these as device ids and the ingest as senders.
 */
export const SERVICE_IDENTITIES: readonly string[] = Object.freeze([
  INGEST_IDENTITY,
  MONITOR_IDENTITY,
  "telegraf",
  "bridge",
  // The broker launcher's identity for Mosquitto's dynamic-security plugin (host/src/broker/revocation-sync.ts).
  "broker-admin",
  FLEET_ADMIN_IDENTITY,
]);

export function isServiceIdentity(name: string): boolean {
  return SERVICE_IDENTITIES.includes(name.toLowerCase());
}

/**
 * `prefix0001`, `prefix0002`, …: a fleet's ids, zero-padded so they sort. The one generator of device ids
 * (the PKI, the manifests, the emulator and the benches); callers that take the prefix from a user check
 * the result with the manifests' deviceIdProblem for a specific message.
 */
export function deviceIdSequence(
  prefix: string,
  count: number,
  width = Math.max(4, String(count).length),
): string[] {
  if (!Number.isInteger(count) || count < 0)
    throw new RangeError(`count must be a non-negative integer, got ${count}`);
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i + 1).padStart(width, "0")}`);
}

/**
 * Firmware version the emulator's boards report (`emulator-<n>`): the ingest stores their readings with
 * the tag `emulated=true`, so emulated data is told apart in the store even when it reaches a real one.
 */
export const EMULATOR_FW_PREFIX = "emulator-";

export function isEmulatedFirmware(fw: string): boolean {
  return fw.startsWith(EMULATOR_FW_PREFIX);
}

/** Every board's end-to-end confirmations (topics.downlinkTopic(id, "stored")): only the ingest writes here. */
export const STORED_CONFIRMATION_FILTER = `${TOPIC_ROOT}/+/down/stored`;
