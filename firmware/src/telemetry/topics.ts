import { isValidDeviceId } from "./reading";

export const TOPIC_ROOT = "electrolyser";

export const telemetryTopic = (id: string): string => `${TOPIC_ROOT}/${id}/telemetry`;
export const statusTopic = (id: string): string => `${TOPIC_ROOT}/${id}/status`;
export const commandTopic = (id: string): string => `${TOPIC_ROOT}/${id}/command`;

export type TopicKind = "telemetry" | "status" | "command";

/** Splits `electrolyser/<id>/<kind>`; undefined for anything else, including a bad id. */
export function parseTopic(topic: string): { sensorId: string; kind: TopicKind } | undefined {
  const parts = topic.split("/");
  if (parts.length !== 3 || parts[0] !== TOPIC_ROOT) return undefined;
  const [, sensorId, kind] = parts as [string, string, string];
  if (!isValidDeviceId(sensorId)) return undefined;
  if (kind !== "telemetry" && kind !== "status" && kind !== "command") return undefined;
  return { sensorId, kind };
}
