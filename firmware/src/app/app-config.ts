// The build-time settings from the manifest's `config` (mc/config). `mcconfig key=value` overrides
// arrive as strings, the manifest's own values as numbers/booleans, so every field is parsed here,
// once, with its default and its bounds. Per-device settings (broker, interval, keys) come from NVS;
// the ones here that repeat them are overrides for bench and simulator runs.
import { CONFIRMATION_MODES } from "./mqtt-session";
import type { ConfirmationMode } from "./mqtt-session";

export interface AppConfig {
  /** Firmware version carried in every reading. */
  fw: string;
  /** Overrides the provisioned interval when set. */
  intervalMs: number | null;
  /** Overrides the provisioned broker host / port when set (simulator, bench). */
  brokerHost: string | null;
  brokerPort: number | null;
  /** SNTP server; empty means the clock is already right (the simulator runs on the host's clock). */
  sntp: string;
  /** When true, a board provisioned without a payload key refuses to publish rather than send plaintext. */
  encryptRequired: boolean;
  /** Readings held in RAM until acknowledged: about 300 bytes each once sealed, so size it to the heap. */
  outboxCapacity: number;
  maxInflight: number;
  keepaliveMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** How often a board without a usable identity looks again (provisioning rewrites NVS). */
  provisioningPollMs: number;
  /** A CONNACK that has not arrived by then counts as a failed attempt (a stalled TLS handshake, say). */
  connectTimeoutMs: number;
  /** How often the console gets a line of delivery counters; 0 for never. */
  statsIntervalMs: number;
  /** End-to-end confirmations from the ingest (see MqttSession): on, off, or auto (fall back if none come). */
  confirmations: ConfirmationMode;
  /** A PUBACKed reading not confirmed this long after is sent again; above the store's durable horizon. */
  confirmTimeoutMs: number;
  /**
   * The flash partition (label) holding the outbox ring, so unconfirmed readings survive a reboot or a power
   * cut (../outbox/outbox-journal.ts); empty: none, the outbox lives in RAM only.
   */
  outboxPartition: string;
}

export const DEFAULT_APP_CONFIG: Readonly<AppConfig> = Object.freeze({
  fw: "0.1.0",
  intervalMs: null,
  brokerHost: null,
  brokerPort: null,
  sntp: "pool.ntp.org",
  encryptRequired: false,
  outboxCapacity: 100,
  maxInflight: 10,
  keepaliveMs: 60_000,
  reconnectMinMs: 1_000,
  reconnectMaxMs: 60_000,
  provisioningPollMs: 30_000,
  connectTimeoutMs: 30_000,
  statsIntervalMs: 60_000,
  confirmations: "auto",
  // The ingest holds a VictoriaMetrics write 30 s (its durable horizon) before confirming it, batched per second.
  confirmTimeoutMs: 60_000,
  outboxPartition: "",
});

export type ConfigProblem = string;

function integer(
  raw: unknown,
  name: string,
  min: number,
  max: number,
  problems: ConfigProblem[],
): number | undefined {
  if (raw === undefined || raw === null || raw === "") return undefined;
  const n = typeof raw === "number" ? raw : typeof raw === "string" ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    problems.push(`config ${name} must be an integer ${min}..${max}`);
    return undefined;
  }
  return n;
}

function flag(raw: unknown, name: string, problems: ConfigProblem[]): boolean | undefined {
  if (raw === undefined || raw === null || raw === "") return undefined;
  if (raw === true || raw === 1 || raw === "true" || raw === "1") return true;
  if (raw === false || raw === 0 || raw === "false" || raw === "0") return false;
  problems.push(`config ${name} must be true or false`);
  return undefined;
}

function text(raw: unknown): string | undefined {
  return typeof raw === "string" ? raw : undefined;
}

function confirmationMode(raw: unknown, problems: ConfigProblem[]): ConfirmationMode | undefined {
  if (raw === undefined || raw === null || raw === "") return undefined;
  const mode = CONFIRMATION_MODES.find((m) => m === raw);
  if (!mode) problems.push(`config confirmations must be one of ${CONFIRMATION_MODES.join(", ")}`);
  return mode;
}

/** ESP-IDF partition labels are at most 16 characters. */
function partitionLabel(raw: unknown, problems: ConfigProblem[]): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== "string" || raw.length > 16 || !/^[A-Za-z0-9_]*$/.test(raw)) {
    problems.push("config outboxPartition must be a partition label (up to 16 letters, digits, _) or empty");
    return undefined;
  }
  return raw;
}

/** Reads mc/config. Bad values fall back to the default and are reported, never thrown. */
export function parseAppConfig(raw: Readonly<Record<string, unknown>>): {
  config: AppConfig;
  problems: ConfigProblem[];
} {
  const problems: ConfigProblem[] = [];
  const d = DEFAULT_APP_CONFIG;
  const interval = integer(raw.interval, "interval", 100, 86_400_000, problems);
  const port = integer(raw.brokerPort, "brokerPort", 1, 65535, problems);
  const host = text(raw.brokerHost);
  const fw = text(raw.fw);
  if (fw !== undefined && (fw.length === 0 || fw.length > 32))
    problems.push("config fw must be 1..32 characters");
  const minMs = integer(raw.reconnectMinMs, "reconnectMinMs", 100, 3_600_000, problems) ?? d.reconnectMinMs;
  let maxMs = integer(raw.reconnectMaxMs, "reconnectMaxMs", 100, 3_600_000, problems) ?? d.reconnectMaxMs;
  if (maxMs < minMs) {
    problems.push("config reconnectMaxMs is below reconnectMinMs");
    maxMs = minMs;
  }
  const config: AppConfig = {
    fw: fw !== undefined && fw.length > 0 && fw.length <= 32 ? fw : d.fw,
    intervalMs: interval ?? null,
    brokerHost: host !== undefined && host.length > 0 ? host : null,
    brokerPort: port ?? null,
    sntp: text(raw.sntp) ?? d.sntp,
    encryptRequired: flag(raw.encrypt, "encrypt", problems) ?? d.encryptRequired,
    outboxCapacity: integer(raw.outboxCapacity, "outboxCapacity", 1, 100_000, problems) ?? d.outboxCapacity,
    // The broker's default max_inflight_messages is 20; more would only queue there.
    maxInflight: integer(raw.maxInflight, "maxInflight", 1, 20, problems) ?? d.maxInflight,
    keepaliveMs: integer(raw.keepalive, "keepalive", 1_000, 3_600_000, problems) ?? d.keepaliveMs,
    reconnectMinMs: minMs,
    reconnectMaxMs: maxMs,
    provisioningPollMs:
      integer(raw.provisioningPoll, "provisioningPoll", 100, 3_600_000, problems) ?? d.provisioningPollMs,
    connectTimeoutMs:
      integer(raw.connectTimeout, "connectTimeout", 1_000, 600_000, problems) ?? d.connectTimeoutMs,
    statsIntervalMs:
      integer(raw.statsInterval, "statsInterval", 0, 86_400_000, problems) ?? d.statsIntervalMs,
    confirmations: confirmationMode(raw.confirmations, problems) ?? d.confirmations,
    confirmTimeoutMs:
      integer(raw.confirmTimeout, "confirmTimeout", 1_000, 3_600_000, problems) ?? d.confirmTimeoutMs,
    outboxPartition: partitionLabel(raw.outboxPartition, problems) ?? d.outboxPartition,
  };
  return { config, problems };
}
