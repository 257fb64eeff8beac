import type { ChannelName } from "./channels";

/** One sample of all six channels from one board. */
export interface Reading {
  sensorId: string;
  /** Per boot, from 0, assigned by the outbox; (sensorId, boot, seq) names a reading uniquely. */
  seq: number;
  /** Device clock, milliseconds since the Unix epoch. */
  ts: number;
  /** Boot counter persisted in NVS; also the high half of the envelope nonce. */
  boot: number;
  fw: string;
  /** null where the channel's sensor reported a fault (listed in faults). */
  values: Record<ChannelName, number | null>;
  faults: ChannelName[];
}

export const MAX_DEVICE_ID_LENGTH = 32;
export const MAX_FIRMWARE_VERSION_LENGTH = 32;
/**
 * Generous for six channels (a full reading is about 250 bytes); bounds what a decoder will parse and what
 * the envelope will seal. Here, below both, so neither the codec nor the envelope imports the other.
 */
export const MAX_PAYLOAD_BYTES = 1024;

// Letters, digits, '.', '_', '-': no MQTT wildcard or level separator, nothing an X.509 CN
// or an NVS string would need escaped, and no leading '.' or '-' (hidden files, CLI flags).
const DEVICE_ID = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$/;

export function isValidDeviceId(id: string): boolean {
  return typeof id === "string" && DEVICE_ID.test(id);
}

/** The largest value that the envelope's 32-bit boot field and NVS i32 can both hold. */
export const MAX_BOOT = 0x7fffffff;
