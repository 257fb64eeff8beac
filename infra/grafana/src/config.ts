// Deployment facts shared by dashboards, alert rules and their provisioning.
// Change a limit here and run `npm run dashboards`; a test fails while the committed files are stale.
import { CELL_VOLTAGE_MAX, CHANNELS } from "../../../firmware/src/telemetry/channels";
import type { DatasourceKind } from "./model";

/** The InfluxDB bucket the ingest writes (and Telegraf, for unencrypted fleets). */
export const TELEMETRY_BUCKET = "telemetry";

export interface DatasourceSpec {
  kind: DatasourceKind;
  /** Grafana plugin id. */
  type: "influxdb" | "prometheus";
  /** Fixed uid, so provisioned dashboards and alert rules find the provisioned datasource. */
  uid: string;
  name: string;
  /** Where the generated dashboards of this kind go, below infra/grafana/dashboards/. */
  folder: string;
  /** Grafana folder title for the dashboards and alert rules of this kind. */
  grafanaFolder: string;
}

export const DATASOURCES: Readonly<Record<DatasourceKind, DatasourceSpec>> = {
  influxdb: {
    kind: "influxdb",
    type: "influxdb",
    uid: "est-influxdb",
    name: "InfluxDB telemetry (Flux)",
    folder: "influxdb",
    grafanaFolder: "Electrolyser",
  },
  victoriametrics: {
    kind: "victoriametrics",
    type: "prometheus",
    uid: "est-victoriametrics",
    name: "VictoriaMetrics telemetry",
    folder: "victoriametrics",
    grafanaFolder: "Electrolyser",
  },
};

/** Alarm limits. Safety limits come from the channel table; the rest are fleet settings. */
export const ALERT_LIMITS = {
  /** H2 purity below this (%) alarms: O2 crossover approaches the flammable range. */
  purityMinPct: CHANNELS.purity_pct.safeMin ?? 99.9,
  temperatureMaxC: CHANNELS.temperature_c.safeMax ?? 85,
  pressureMaxBar: CHANNELS.pressure_bar.safeMax ?? 35,
  /** Cells in series per stack: cell voltage = stack voltage / cells (the emulator's default stack). */
  cellsPerStack: 40,
  cellVoltageMaxV: CELL_VOLTAGE_MAX,
  /** Boards report once per this many seconds. */
  reportIntervalS: 5,
  /** A board is silent after this many missed reports. */
  silentIntervals: 6,
  /** Certificates (CAs, broker, services, devices) and CRLs alarm this many days before they expire. */
  pkiExpiryDays: 30,
  /** Status messages per second, fleet-wide, over the alert window that count as a reconnect storm. */
  reconnectStormPerS: 0.2,
  /** Refused TLS handshakes, fleet-wide, in the alert window that alarm (someone without a valid certificate). */
  refusedHandshakes: 20,
  /** A board's median store-minus-device time above this (ms) is a clock out of step. */
  clockSkewMaxMs: 60_000,
  /** Alert rules look at this window and are evaluated this often. */
  windowS: 300,
  evaluateEveryS: 60,
} as const;
