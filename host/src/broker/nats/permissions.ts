/**
 * The fleet's topic rights as NATS subject permissions, one set per identity: NATS 2.9 has no `%u`
 * template, so what infra/mosquitto/acl.template grants with `pattern` lines is spelled out per user.
 * MQTT topic levels become subject tokens (`electrolyser/<id>/telemetry` is `electrolyser.<id>.telemetry`);
 * host/src/broker/topic-policy.ts is the same rule for Mosquitto and Aedes, and a test checks they agree.
 */
import { FLEET_ADMIN_IDENTITY } from "../../../../firmware/src/telemetry/vocabulary";
import { MONITOR_IDENTITY } from "../topic-policy";

export interface SubjectPermissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
}

const ROOT = "electrolyser";

/**
 * Where the broker delivers QoS 1 messages to an MQTT session (a JetStream consumer's deliver subject).
 * Every MQTT client subscribes there internally, so it needs the right; an MQTT SUBSCRIBE to a `$` topic
 * is refused by the broker itself, and the plain NATS port does not accept fleet certificates (see
 * node-config.ts), so no board can read another's deliveries through it.
 */
export const MQTT_DELIVERY_SUBJECTS = "$MQTT.sub.>";

/** The services of acl.template that read the fleet, and what each reads. */
const FLEET_READERS: Readonly<Record<string, readonly ("telemetry" | "status" | "csr")[]>> = {
  [MONITOR_IDENTITY]: ["telemetry", "status"],
  telegraf: ["telemetry"],
  // Status to see a rotated board connect; csr for boards' answers to key requests.
  [FLEET_ADMIN_IDENTITY]: ["status", "csr"],
};

/**
 * An identity must be one subject token that is also one plain MQTT topic level: no `.` (a NATS separator,
 * which device ids may otherwise hold), `*` `>` (NATS wildcards), `+` `#` `/` (MQTT's), `$` or whitespace.
 */
export function subjectTokenProblem(id: string): string | undefined {
  if (id.length === 0) return "is empty";
  if (/[.*>+#/$\s]/.test(id))
    return "contains one of . * > + # / $ or a space, which NATS or MQTT read as syntax";
  return undefined;
}

/**
 * A board gets acl.template's `pattern` rights: publish its own telemetry, status and key-request answer (csr), read its own downlink
 * tree. A service gets none of them (acl.template's `topic deny electrolyser/<service>/#`: no service
 * publishes telemetry under its own name); the ingest (`ingestIdentity`), `monitor` and `telegraf` read the
 * fleet, and the ingest alone publishes the boards' `down/stored` confirmations, `fleet-admin` alone their
 * `down/trust` and `down/config` messages. Nobody publishes anything else.
 */
export function permissionsFor(
  identity: string,
  kind: "device" | "service",
  ingestIdentity = "ingest",
): SubjectPermissions {
  const problem = subjectTokenProblem(identity);
  if (problem) throw new Error(`identity "${identity}" ${problem}`);
  // Stricter than Mosquitto's CN-only ACL: a device certificate named like a service reads nothing more.
  const reads =
    kind !== "service"
      ? undefined
      : identity === ingestIdentity
        ? (["telemetry", "status"] as const)
        : FLEET_READERS[identity];
  const service = kind === "service";
  return {
    // An empty allow list means "no restriction" to NATS: a service's publish rights are an explicit deny-all.
    publish:
      service && identity === ingestIdentity
        ? // acl.template: the ingest writes every board's end-to-end confirmations, and nothing else.
          { allow: [`${ROOT}.*.down.stored`], deny: [`${ROOT}.${identity}.>`] }
        : service && identity === FLEET_ADMIN_IDENTITY
          ? // acl.template: field rotation and settings, written to any board (it reads their status only).
            // and the boards' retained key-request answers, cleared (an empty message) when a rotation ends.
            {
              allow: [`${ROOT}.*.down.trust`, `${ROOT}.*.down.config`, `${ROOT}.*.csr`],
              deny: [`${ROOT}.${identity}.>`],
            }
          : service
            ? { allow: [], deny: [">"] }
            : {
                allow: [
                  `${ROOT}.${identity}.telemetry`,
                  `${ROOT}.${identity}.status`,
                  `${ROOT}.${identity}.csr`,
                ],
              },
    subscribe: {
      allow: [
        // A board reads its own downlink tree (electrolyser/<id>/down/#). NATS turns an MQTT filter ending in
        // `/#` into two subscriptions, `x` and `x.>` (the filter matches its parent level too), and refuses
        // the whole SUBSCRIBE if either is not allowed: both are listed.
        ...(service ? [] : [`${ROOT}.${identity}.down`, `${ROOT}.${identity}.down.>`]),
        ...(reads ?? []).map((kind) => `${ROOT}.*.${kind}`),
        MQTT_DELIVERY_SUBJECTS,
      ],
      // A service's own-name tree is nobody's telemetry: it reads none of it (acl.template's deny line).
      ...(service ? { deny: [`${ROOT}.${identity}.>`] } : {}),
    },
  };
}
