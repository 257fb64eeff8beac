/**
 * The fleet's topic rights as a pure function, mirroring infra/mosquitto/acl.template, so brokers other than
 * Mosquitto (the emulator's embedded Aedes) enforce the same rules and tests can check both agree.
 *
 *   board <id>:  publish electrolyser/<id>/telemetry, electrolyser/<id>/status and electrolyser/<id>/csr;
 *                subscribe/read its downlink tree electrolyser/<id>/down/# (never publish there)
 *   ingest:      subscribe/read electrolyser/+/telemetry and electrolyser/+/status, also as $share/<group>/…;
 *                publish electrolyser/<board>/down/stored (the end-to-end confirmations)
 *   telegraf:    subscribe/read electrolyser/+/telemetry
 *   fleet-admin: publish electrolyser/<board>/down/trust and …/down/config (field rotation), read status,
 *                read and publish (clear) electrolyser/<board>/csr, the boards' answers to key requests
 *   monitor:     the same reads as ingest (observers such as the emulator's verifier), under its own identity
 *                so it never shares the ingest's session
 *   services (the ingest identity, monitor, telegraf, bridge): nothing under electrolyser/<own name>/, so the
 *                board patterns never let a service publish telemetry under its own name
 *   anything else: denied.
 *
 * For "subscribe" the topic may be a filter: it is allowed when every topic it can match is readable
 * (an exact filter covered by a right, or the same wildcard the right itself grants). Mosquitto acknowledges
 * such SUBSCRIBEs and filters each delivery instead; an embedded broker should also check every delivery
 * with action "subscribe" and the concrete topic.
 */
import {
  FLEET_ADMIN_IDENTITY,
  INGEST_IDENTITY,
  MONITOR_IDENTITY,
  SERVICE_IDENTITIES,
} from "../../../firmware/src/telemetry/vocabulary";
const ROOT = "electrolyser";

/** Identities are device ids / service names: nothing that could act as a topic wildcard or separator. */
const IDENTITY = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$/;

export type TopicAction = "publish" | "subscribe";

export { MONITOR_IDENTITY } from "../../../firmware/src/telemetry/vocabulary";

export function isAllowed(
  identity: string,
  action: TopicAction,
  topic: string,
  ingestIdentity = INGEST_IDENTITY,
): boolean {
  if (!IDENTITY.test(identity)) return false;
  if (topic.length === 0 || topic.includes("\u0000")) return false;

  let filter = topic;
  if (action === "subscribe" && topic.startsWith("$share/")) {
    // $share/<group>/<filter>: the group is a single non-empty level without wildcards.
    const rest = topic.slice("$share/".length);
    const slash = rest.indexOf("/");
    if (slash <= 0) return false;
    const group = rest.slice(0, slash);
    if (group.includes("+") || group.includes("#")) return false;
    filter = rest.slice(slash + 1);
    if (filter.length === 0) return false;
  }

  const levels = filter.split("/");
  if (levels[0] !== ROOT) return false;
  if (levels.length === 4 && levels[2] === "down")
    return downlinkAllowed(identity, action, levels, filter !== topic, ingestIdentity);
  if (levels.length !== 3) return false;
  const [, who, kind] = levels as [string, string, string];
  if (kind.includes("+") || kind.includes("#")) return false;
  const isService = identity === ingestIdentity || SERVICE_IDENTITIES.includes(identity);
  if (isService && who === identity) return false; // `topic deny electrolyser/<name>/#`, checked before any grant

  if (action === "publish") {
    if (filter !== topic) return false;
    if (identity === FLEET_ADMIN_IDENTITY && kind === "csr" && IDENTITY.test(who)) return true;
    // Mosquitto's `pattern` lines apply to every user, the ingest identity included.
    return who === identity && (kind === "telemetry" || kind === "status" || kind === "csr");
  }

  // Either the single-level wildcard the ACL grants, or one concrete board.
  const readsFleet = identity === ingestIdentity || identity === MONITOR_IDENTITY;
  if (readsFleet && (kind === "telemetry" || kind === "status") && (who === "+" || IDENTITY.test(who)))
    return true;
  if (identity === "telegraf" && kind === "telemetry" && (who === "+" || IDENTITY.test(who))) return true;
  // fleet-admin reads the boards' status, to see a rotated board connect with its new certificate.
  if (
    identity === FLEET_ADMIN_IDENTITY &&
    (kind === "status" || kind === "csr") &&
    (who === "+" || IDENTITY.test(who))
  )
    return true;
  // `electrolyser/<id>/down/#` also matches its parent level (MQTT 4.7.1.2).
  return action === "subscribe" && filter === topic && kind === "down" && who === identity && !isService;
}

/**
 * electrolyser/<who>/down/<kind>: a board reads its own; the ingest publishes `stored` to any board, fleet-admin
 * `trust` and `config`.
 */
function downlinkAllowed(
  identity: string,
  action: TopicAction,
  levels: readonly string[],
  shared: boolean,
  ingestIdentity: string,
): boolean {
  const [, who, , kind] = levels as [string, string, string, string];
  const isService = identity === ingestIdentity || SERVICE_IDENTITIES.includes(identity);
  if (isService && who === identity) return false;
  if (action === "publish") {
    if (!IDENTITY.test(who)) return false;
    if (identity === FLEET_ADMIN_IDENTITY) return kind === "trust" || kind === "config";
    return identity === ingestIdentity && kind === "stored";
  }
  // Reading: a board, its own tree only (any kind, as `pattern read electrolyser/%u/down/#`); never via $share.
  return !shared && !isService && who === identity && kind.length > 0;
}
