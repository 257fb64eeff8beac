// "Electrolyser Telemetry": the six channels of the selected boards, coloured by their safe ranges.
import {
  CHANNEL_NAMES,
  CHANNELS,
  type ChannelName,
  type ChannelSpec,
} from "../../../../firmware/src/telemetry/channels";
import { ALERT_LIMITS } from "../config";
import type { DashboardDef, PanelDef, ThresholdStep } from "../dashboard-model";
import type { SeriesQuery } from "../model";

export const SENSOR_VARIABLE = {
  name: "sensor",
  label: "Board",
  tag: "sensor_id",
  measurement: "electrolyser",
  field: "seq",
} as const;

const sensorFilter = [{ tag: "sensor_id", variable: SENSOR_VARIABLE.name }] as const;

/** Red outside the safe range, green inside; channels without a range stay green. */
export function safeRangeThresholds(min: number | undefined, max: number | undefined): ThresholdStep[] {
  const steps: ThresholdStep[] = [{ value: null, color: min === undefined ? "green" : "red" }];
  if (min !== undefined) steps.push({ value: min, color: "green" });
  if (max !== undefined) steps.push({ value: max, color: "red" });
  return steps;
}

/** Stack voltage has no fixed safe range of its own: its limit is the cell limit times the cells. */
function channelLimits(spec: ChannelSpec): { min?: number; max?: number } {
  if (spec.name === "voltage_v") return { max: ALERT_LIMITS.cellVoltageMaxV * ALERT_LIMITS.cellsPerStack };
  return { min: spec.safeMin, max: spec.safeMax };
}

function unitOf(spec: ChannelSpec): string {
  return spec.grafanaUnit && spec.grafanaUnit !== "none" ? spec.grafanaUnit : `suffix: ${spec.unit}`;
}

function channelQuery(name: ChannelName): SeriesQuery {
  return {
    measurement: "electrolyser",
    field: name,
    aggregation: { kind: "gauge", reducer: "mean" },
    filters: sensorFilter,
    legend: "{{sensor_id}}",
  };
}

function channelPanel(name: ChannelName, visual: "stat" | "timeseries"): PanelDef {
  const spec = CHANNELS[name];
  const { min, max } = channelLimits(spec);
  const range = [min !== undefined ? `min ${min}` : "", max !== undefined ? `max ${max}` : ""]
    .filter(Boolean)
    .join(", ");
  return {
    title: visual === "stat" ? `${spec.label} now` : spec.label,
    description: `${spec.label} (${spec.unit}) per board.${range ? ` Safe range: ${range} ${spec.unit}.` : ""}`,
    visual,
    unit: unitOf(spec),
    decimals: Math.min(spec.decimals, 2),
    thresholds: safeRangeThresholds(min, max),
    queries: [channelQuery(name)],
    width: visual === "stat" ? 4 : 12,
    height: visual === "stat" ? 4 : 8,
  };
}

const cellVoltagePanel: PanelDef = {
  title: "Cell voltage",
  description: `Stack voltage / ${ALERT_LIMITS.cellsPerStack} cells; a PEM cell degrades quickly above ${ALERT_LIMITS.cellVoltageMaxV} V.`,
  visual: "timeseries",
  unit: "volt",
  decimals: 3,
  thresholds: safeRangeThresholds(undefined, ALERT_LIMITS.cellVoltageMaxV),
  queries: [{ ...channelQuery("voltage_v"), divideBy: ALERT_LIMITS.cellsPerStack }],
  width: 12,
  height: 8,
};

export const telemetryDashboard: DashboardDef = {
  uid: "est-telemetry",
  title: "Electrolyser Telemetry",
  description:
    "The six channels of each selected board. Colours follow the safe ranges of firmware/src/telemetry/channels.ts.",
  tags: ["electrolyser", "telemetry"],
  variables: [SENSOR_VARIABLE],
  refresh: "10s",
  from: "now-1h",
  rows: [
    { title: "Now", panels: CHANNEL_NAMES.map((n) => channelPanel(n, "stat")) },
    {
      title: "Channels",
      panels: [...CHANNEL_NAMES.map((n) => channelPanel(n, "timeseries")), cellVoltagePanel],
    },
  ],
};
