import { CHANNEL_NAMES } from "../../firmware/src/telemetry/channels";
import { INTERVAL_MS_MAX, INTERVAL_MS_MIN } from "../../firmware/src/identity/nvs-layout";

export const SENSOR_DRIVERS = ["max31865", "ads1115-loop", "ina228", "modbus-mfm", "emulated"] as const;
export const BOARD_PATTERN = "^[a-z0-9][a-z0-9-]{0,31}$";
// Same rule as isValidDeviceId; the schema repeats it so editors flag bad ids as one types them.
export const DEVICE_ID_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$";
export const SITE_ID_PATTERN = "^[a-z0-9][a-z0-9_-]{0,31}$";
export const MAC_PATTERN = "^[0-9a-f]{2}(:[0-9a-f]{2}){5}$";
// ISO 8601 UTC as Date.toISOString writes it; a pattern because ajv's strict mode has no `format` without ajv-formats.
export const ISO_TIME_PATTERN = "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,3})?Z$";

const calibration = {
  type: "object",
  description: "Linear trim applied after the driver's conversion: value * gain + offset.",
  additionalProperties: false,
  required: ["gain", "offset"],
  properties: {
    gain: { type: "number", not: { const: 0 } },
    offset: { type: "number" },
  },
} as const;

const sensor = {
  type: "object",
  additionalProperties: false,
  required: ["driver"],
  properties: {
    driver: { enum: [...SENSOR_DRIVERS] },
    address: { type: "integer", minimum: 0, maximum: 247, description: "I2C address or Modbus unit id" },
    input: { type: "integer", minimum: 0, maximum: 3, description: "ADS1115 input (A0..A3)" },
    rangeLow: { type: "number", description: "4-20 mA loop: engineering value at 4 mA" },
    rangeHigh: { type: "number", description: "4-20 mA loop: engineering value at 20 mA" },
    calibration,
  },
  if: { properties: { driver: { const: "ads1115-loop" } } },
  then: { required: ["input", "rangeLow", "rangeHigh"] },
} as const;

const sensors = {
  type: "object",
  description: "Which channel is measured by what; a channel not listed is reported as faulted (null).",
  propertyNames: { enum: [...CHANNEL_NAMES] },
  additionalProperties: sensor,
} as const;

const keyType = {
  enum: ["rsa-2048", "p256"],
  description: "rsa-2048 for ESP32 boards (Moddable TLS takes RSA client keys only)",
} as const;

/** Written by `npm run provision`: which chip holds the identity. Public facts only, never a key. */
const provisioning = {
  type: "object",
  description: "Written by npm run provision: the board (by MAC) holding this identity; never a secret.",
  additionalProperties: false,
  required: ["mac", "certSerial", "certSha256", "keyId", "at"],
  properties: {
    mac: { type: "string", pattern: MAC_PATTERN, description: "the ESP32's factory MAC, lower-case" },
    certSerial: {
      type: "string",
      pattern: "^[0-9a-f]{1,40}$",
      description: "serial of the certificate written",
    },
    certSha256: {
      type: "string",
      pattern: "^[0-9a-f]{64}$",
      description: "SHA-256 of the certificate (DER)",
    },
    keyId: {
      type: ["integer", "null"],
      minimum: 0,
      maximum: 255,
      description: "payload key id, null when payloads are not sealed",
    },
    at: { type: "string", pattern: ISO_TIME_PATTERN, description: "when it was provisioned (UTC)" },
  },
} as const;

const intervalMs = {
  type: "integer",
  minimum: INTERVAL_MS_MIN,
  maximum: INTERVAL_MS_MAX,
  description:
    "milliseconds between readings (provisioned into the board); the ingest refuses a board sending far faster (rate_exceeded)",
} as const;

/** JSON Schema (draft-07) of a fleet manifest; manifests/fleet.schema.json is this, for editors. */
export const fleetManifestSchema = {
  $schema: "http://json-schema.org/draft-07/schema#",
  $id: "https://electrolyser-secure-telemetry.invalid/fleet.schema.json",
  title: "Electrolyser fleet manifest",
  type: "object",
  additionalProperties: false,
  required: ["version", "fleet", "sites", "devices"],
  properties: {
    $schema: { type: "string" },
    version: { const: 1 },
    fleet: { type: "string", pattern: SITE_ID_PATTERN, description: "fleet name" },
    description: { type: "string", maxLength: 500 },
    sites: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["id"],
        properties: {
          id: { type: "string", pattern: SITE_ID_PATTERN, description: "store tag `site`" },
          name: { type: "string", maxLength: 120 },
          technology: { enum: ["pem", "alkaline", "soec", "aem"] },
          timezone: { type: "string", maxLength: 64 },
        },
      },
    },
    defaults: {
      type: "object",
      additionalProperties: false,
      properties: { board: { type: "string", pattern: BOARD_PATTERN }, keyType, intervalMs, sensors },
    },
    devices: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["id", "site"],
        properties: {
          id: { type: "string", pattern: DEVICE_ID_PATTERN },
          site: { type: "string" },
          board: { type: "string", pattern: BOARD_PATTERN, description: "e.g. esp32-devkitc, or emulator" },
          keyType,
          intervalMs,
          description: { type: "string", maxLength: 200 },
          sensors,
          provisioning,
        },
      },
    },
  },
} as const;
