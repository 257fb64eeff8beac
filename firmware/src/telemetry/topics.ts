import { isValidDeviceId } from "./reading";

export const TOPIC_ROOT = "electrolyser";

export const telemetryTopic = (id: string): string => `${TOPIC_ROOT}/${id}/telemetry`;
export const statusTopic = (id: string): string => `${TOPIC_ROOT}/${id}/status`;
/** A board's answer to a key request (its CSR, sealed): written by that board only, read by fleet-admin. */
export const keyAnswerTopic = (id: string): string => `${TOPIC_ROOT}/${id}/csr`;

/**
 * Everything sent to a board lives under `electrolyser/<id>/down/<kind>`: `stored` carries the ingest's
 * end-to-end confirmations (./confirmation), `trust` certificate and broker-pin rotation, `config` settings.
 * A board subscribes to its whole downlink tree once (downlinkFilter) and dispatches on the kind.
 */
export type DownlinkKind = "stored" | "trust" | "config";
export const downlinkTopic = (id: string, kind: DownlinkKind): string => `${TOPIC_ROOT}/${id}/down/${kind}`;
export const downlinkFilter = (id: string): string => `${TOPIC_ROOT}/${id}/down/#`;

export type TopicKind = "telemetry" | "status";

/** Splits `electrolyser/<id>/<kind>`; undefined for anything else, including a bad id. */
export function parseTopic(topic: string): { sensorId: string; kind: TopicKind } | undefined {
  const parts = topic.split("/");
  if (parts.length !== 3 || parts[0] !== TOPIC_ROOT) return undefined;
  const [, sensorId, kind] = parts as [string, string, string];
  if (!isValidDeviceId(sensorId)) return undefined;
  if (kind !== "telemetry" && kind !== "status") return undefined;
  return { sensorId, kind };
}
