/**
 * The device identity as it lives in the ESP32's NVS partition: one namespace, one key per field.
 *
 * Shared by the provisioning command (which writes an NVS image from it) and the firmware (which reads it
 * back through Moddable's `Preference` at boot), so the two can never disagree about a key, a type or a rule.
 * Pure: no node imports, no Buffer, no TextEncoder — it also runs under XS on the board.
 *
 * Type choices follow what `Preference.get` can read back on ESP32: it tries u8, i32, string, blob in that
 * order and returns a u8 as a *boolean*. So u8 is used only for flags; every number (key id included) is i32.
 */
import { isValidDeviceId, MAX_BOOT } from "../telemetry/reading";
import { MAX_PINS, PIN_BYTES, splitPins } from "../tls/broker-trust";
import { encodeUtf8 } from "../util/utf8";
import { formatBrokerList, parseBrokerList, type BrokerAddress } from "./broker-list";

/** The NVS namespace (Moddable `Preference` domain) holding the identity. */
export const PROV_NAMESPACE = "prov";

/** ESP-IDF limit on namespace and key names (NVS_KEY_NAME_MAX_SIZE − 1). */
export const NVS_KEY_MAX_CHARS = 15;
/** ESP-IDF limit on one stored string, its terminating NUL included: at most 3999 bytes of text. */
export const NVS_STRING_MAX_BYTES = 4000;

export type NvsValueType = "u8" | "i32" | "string" | "blob";

/**
 * When a key must be present:
 * - always: every provisioned board has it;
 * - tls: when `secure` is set (mutual TLS needs the CA, the client certificate and its key);
 * - encrypt: when `encrypt` is set (payload envelope needs the key and its id);
 * - optional: may be absent.
 */
export type KeyRequirement = "always" | "tls" | "encrypt" | "optional";

export interface NvsKeySpec {
  readonly key: string;
  readonly type: NvsValueType;
  readonly required: KeyRequirement;
  /** Never printed, logged or recorded in a manifest. */
  readonly secret: boolean;
  readonly description: string;
}

export const PROV_KEYS = {
  deviceId: {
    key: "device_id",
    type: "string",
    required: "always",
    secret: false,
    description: "sensor id: MQTT topic level, certificate CN",
  },
  broker: {
    key: "broker",
    type: "string",
    required: "always",
    secret: false,
    description: "broker URL, mqtt://host or mqtts://host[:port]",
  },
  port: {
    key: "port",
    type: "i32",
    required: "always",
    secret: false,
    description: "broker TCP port, 1..65535",
  },
  interval: {
    key: "interval",
    type: "i32",
    required: "always",
    secret: false,
    description: "milliseconds between readings",
  },
  secure: {
    key: "secure",
    type: "u8",
    required: "always",
    secret: false,
    description: "1 = mutual TLS to the broker",
  },
  encrypt: {
    key: "encrypt",
    type: "u8",
    required: "always",
    secret: false,
    description: "1 = payloads sealed in the AES-256-GCM envelope",
  },
  site: {
    key: "site",
    type: "string",
    required: "optional",
    secret: false,
    description: "site label (store tag `site`)",
  },
  caDer: {
    key: "ca_der",
    type: "blob",
    required: "tls",
    secret: false,
    description: "CA certificate the broker's chain is checked against (the fleet root), DER",
  },
  certDer: {
    key: "cert_der",
    type: "blob",
    required: "tls",
    secret: false,
    description: "client certificate, DER",
  },
  keyDer: {
    key: "key_der",
    type: "blob",
    required: "tls",
    secret: true,
    description: "client RSA private key, PKCS#8 DER",
  },
  brokerPins: {
    key: "broker_pins",
    type: "blob",
    required: "tls",
    secret: false,
    description: "pin-sha256 of the broker's current and next public keys, 32 bytes each, concatenated",
  },
  keyId: {
    key: "key_id",
    type: "i32",
    required: "encrypt",
    secret: false,
    description: "payload key id, 0..255 (envelope byte)",
  },
  payloadKey: {
    key: "payload_key",
    type: "blob",
    required: "encrypt",
    secret: true,
    description: "32-byte AES-256-GCM payload key",
  },
  wifiSsid: {
    key: "wifi_ssid",
    type: "string",
    required: "optional",
    secret: false,
    description: "Wi-Fi network name",
  },
  wifiPsk: {
    key: "wifi_psk",
    type: "string",
    required: "optional",
    secret: true,
    description: "Wi-Fi WPA2 passphrase",
  },
  boot: {
    key: "boot",
    type: "i32",
    required: "optional",
    secret: false,
    description: "boot counter (envelope nonce prefix); the firmware advances it",
  },
  brokers: {
    key: "brokers",
    type: "string",
    required: "optional",
    secret: false,
    description:
      "further brokers to fail over to (cluster nodes), host:port,host:port; broker:port stays home",
  },
} as const satisfies Record<string, NvsKeySpec>;

export type ProvKeyName = keyof typeof PROV_KEYS;
export const PROV_KEY_LIST: readonly NvsKeySpec[] = Object.values(PROV_KEYS);

export const PAYLOAD_KEY_BYTES = 32;
export const INTERVAL_MS_MIN = 100;
export const INTERVAL_MS_MAX = 86_400_000;
const SITE_MAX_BYTES = 64;
const BROKER_MAX_BYTES = 256;
const BROKERS_MAX_BYTES = 1024;
const SSID_MAX_BYTES = 32;
const BLOB_MAX_BYTES = 16_384;

export interface TlsIdentity {
  caDer: Uint8Array;
  certDer: Uint8Array;
  /** PKCS#8 DER: the only client-key form Moddable's TLS accepts. Secret. */
  keyDer: Uint8Array;
  /** SHA-256 of the broker's SubjectPublicKeyInfo: current key first, then the next one. */
  brokerPins: Uint8Array[];
}

export interface PayloadKeyIdentity {
  keyId: number;
  /** Secret. */
  key: Uint8Array;
}

export interface WifiSettings {
  ssid: string;
  /** Absent for an open network. Secret. */
  psk?: string;
}

export interface DeviceIdentity {
  deviceId: string;
  broker: string;
  /** Host part of `broker`, what the socket connects to. */
  brokerHost: string;
  port: number;
  /** Further brokers (the other nodes of a cluster), tried in order after brokerHost:port fails. */
  failover?: BrokerAddress[];
  intervalMs: number;
  site?: string;
  /** Present exactly when `secure` is set. */
  tls: TlsIdentity | null;
  /** Present exactly when `encrypt` is set. */
  payload: PayloadKeyIdentity | null;
  wifi: WifiSettings | null;
}

export type IdentityErrorCode = "missing" | "wrong_type" | "invalid";

export interface IdentityError {
  key: string;
  code: IdentityErrorCode;
  message: string;
}

export type IdentityResult = { ok: true; identity: DeviceIdentity } | { ok: false; errors: IdentityError[] };

/** One NVS entry of the identity namespace, in the form the image writer takes. */
export type ProvEntry =
  | { key: string; type: "u8"; value: number }
  | { key: string; type: "i32"; value: number }
  | { key: string; type: "string"; value: string }
  | { key: string; type: "blob"; value: Uint8Array };

/** The reader the firmware passes in, e.g. `(k) => Preference.get(PROV_NAMESPACE, k)`. */
export type NvsGetter = (key: string) => unknown;

/**
 * Reads and checks the whole identity. Never throws: a board without (or with a damaged) identity reports
 * every problem at once and waits for provisioning instead of crash-looping.
 */
export function parseIdentity(get: NvsGetter): IdentityResult {
  const errors: IdentityError[] = [];
  const r = new FieldReader(get, errors);

  const deviceId = r.string(PROV_KEYS.deviceId, true);
  if (deviceId !== undefined && !isValidDeviceId(deviceId)) {
    r.invalid(PROV_KEYS.deviceId, "must be 1-32 characters of A-Z a-z 0-9 . _ - not starting with . or -");
  }
  const broker = r.string(PROV_KEYS.broker, true);
  const port = r.i32(PROV_KEYS.port, true);
  if (port !== undefined && (port < 1 || port > 65535))
    r.invalid(PROV_KEYS.port, `must be 1..65535, is ${port}`);
  const intervalMs = r.i32(PROV_KEYS.interval, true);
  if (intervalMs !== undefined && (intervalMs < INTERVAL_MS_MIN || intervalMs > INTERVAL_MS_MAX)) {
    r.invalid(PROV_KEYS.interval, `must be ${INTERVAL_MS_MIN}..${INTERVAL_MS_MAX} ms, is ${intervalMs}`);
  }
  const secure = r.flag(PROV_KEYS.secure, true);
  const encrypt = r.flag(PROV_KEYS.encrypt, true);

  let brokerHost: string | undefined;
  if (broker !== undefined) {
    const parsed = parseBrokerUrl(broker);
    if (!parsed) {
      r.invalid(PROV_KEYS.broker, "must be mqtt://host or mqtts://host[:port]");
    } else {
      brokerHost = parsed.host;
      if (secure !== undefined && parsed.tls !== secure) {
        r.invalid(
          PROV_KEYS.broker,
          `scheme ${parsed.tls ? "mqtts" : "mqtt"} disagrees with secure=${secure ? 1 : 0}`,
        );
      }
      if (parsed.port !== undefined && port !== undefined && parsed.port !== port) {
        r.invalid(PROV_KEYS.broker, `URL port ${parsed.port} disagrees with port=${port}`);
      }
    }
  }
  if (broker !== undefined && utf8Length(broker) > BROKER_MAX_BYTES)
    r.invalid(PROV_KEYS.broker, `longer than ${BROKER_MAX_BYTES} bytes`);
  const brokersText = r.string(PROV_KEYS.brokers, false);
  let failover: BrokerAddress[] | undefined;
  if (brokersText !== undefined) {
    const list = parseBrokerList(brokersText);
    if (utf8Length(brokersText) > BROKERS_MAX_BYTES)
      r.invalid(PROV_KEYS.brokers, `longer than ${BROKERS_MAX_BYTES} bytes`);
    else if (!list.ok) r.invalid(PROV_KEYS.brokers, list.problem);
    else if (list.brokers.length === 0) r.invalid(PROV_KEYS.brokers, "is empty");
    else if (list.brokers.some((b) => b.host === brokerHost && b.port === port))
      r.invalid(PROV_KEYS.brokers, "lists the home broker (broker, port) again");
    else failover = list.brokers;
  }

  const site = r.string(PROV_KEYS.site, false);
  if (site !== undefined && (site.length === 0 || utf8Length(site) > SITE_MAX_BYTES)) {
    r.invalid(PROV_KEYS.site, `must be 1..${SITE_MAX_BYTES} bytes`);
  }

  let tls: TlsIdentity | null = null;
  const caDer = r.blob(PROV_KEYS.caDer, secure === true);
  const certDer = r.blob(PROV_KEYS.certDer, secure === true);
  const keyDer = r.blob(PROV_KEYS.keyDer, secure === true);
  const pinBlob = r.blob(PROV_KEYS.brokerPins, secure === true);
  const brokerPins = pinBlob ? splitPins(pinBlob) : null;
  if (pinBlob && !brokerPins)
    r.invalid(
      PROV_KEYS.brokerPins,
      `must be 1..${MAX_PINS} pins of ${PIN_BYTES} bytes, is ${pinBlob.length} bytes`,
    );
  if (secure === true && caDer && certDer && keyDer && brokerPins) {
    for (const [spec, der] of [
      [PROV_KEYS.caDer, caDer],
      [PROV_KEYS.certDer, certDer],
      [PROV_KEYS.keyDer, keyDer],
    ] as const) {
      // Every DER object here is a SEQUENCE; anything else is a truncated or mis-typed value.
      if (der.length < 2 || der[0] !== 0x30) r.invalid(spec, "is not a DER SEQUENCE");
    }
    tls = { caDer, certDer, keyDer, brokerPins };
  }

  let payload: PayloadKeyIdentity | null = null;
  const keyId = r.i32(PROV_KEYS.keyId, encrypt === true);
  const payloadKey = r.blob(PROV_KEYS.payloadKey, encrypt === true);
  if (keyId !== undefined && (keyId < 0 || keyId > 255))
    r.invalid(PROV_KEYS.keyId, `must be 0..255, is ${keyId}`);
  if (payloadKey !== undefined && payloadKey.length !== PAYLOAD_KEY_BYTES) {
    r.invalid(PROV_KEYS.payloadKey, `must be ${PAYLOAD_KEY_BYTES} bytes, is ${payloadKey.length}`);
  }
  if (encrypt === true && keyId !== undefined && payloadKey !== undefined)
    payload = { keyId, key: payloadKey };

  let wifi: WifiSettings | null = null;
  const ssid = r.string(PROV_KEYS.wifiSsid, false);
  const psk = r.string(PROV_KEYS.wifiPsk, false);
  if (ssid !== undefined && (ssid.length === 0 || utf8Length(ssid) > SSID_MAX_BYTES)) {
    r.invalid(PROV_KEYS.wifiSsid, `must be 1..${SSID_MAX_BYTES} bytes`);
  }
  if (psk !== undefined) {
    if (ssid === undefined) r.invalid(PROV_KEYS.wifiPsk, "set without wifi_ssid");
    const pskError = wifiPskProblem(psk);
    if (pskError) r.invalid(PROV_KEYS.wifiPsk, pskError);
  }
  if (ssid !== undefined) wifi = psk === undefined ? { ssid } : { ssid, psk };

  if (
    errors.length > 0 ||
    deviceId === undefined ||
    broker === undefined ||
    brokerHost === undefined ||
    port === undefined ||
    intervalMs === undefined
  ) {
    return { ok: false, errors };
  }
  const identity: DeviceIdentity = { deviceId, broker, brokerHost, port, intervalMs, tls, payload, wifi };
  if (site !== undefined) identity.site = site;
  if (failover) identity.failover = failover;
  return { ok: true, identity };
}

/** The boot counter (0 when never written). Not part of the identity: the firmware owns and advances it. */
export function readBootCounter(get: NvsGetter): number {
  const v = get(PROV_KEYS.boot.key);
  return typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : 0;
}

/**
 * The next boot counter to persist (NVS stores it as i32, the envelope as u32). It stops at MAX_BOOT
 * instead of wrapping: a wrapped counter would seal under boot numbers already used with the same
 * payload key, reusing GCM nonces. Throws when exhausted; the board then publishes nothing until it is
 * re-provisioned under a new payload key id.
 */
export function nextBootCounter(current: number): number {
  if (current >= MAX_BOOT)
    throw new RangeError(
      `boot counter exhausted at ${MAX_BOOT}: re-provision the board with a new payload key id (npm run provision -- --key-id N)`,
    );
  return current + 1;
}

/**
 * The identity as NVS entries in a fixed order (the order the image writer lays them out).
 * `boot` is included when given so that re-provisioning can carry a board's counter forward:
 * a reset counter would reuse envelope nonces under the same payload key.
 */
export function identityToEntries(id: DeviceIdentity, boot?: number): ProvEntry[] {
  const out: ProvEntry[] = [
    { key: PROV_KEYS.deviceId.key, type: "string", value: id.deviceId },
    { key: PROV_KEYS.broker.key, type: "string", value: id.broker },
    { key: PROV_KEYS.port.key, type: "i32", value: id.port },
    { key: PROV_KEYS.interval.key, type: "i32", value: id.intervalMs },
    { key: PROV_KEYS.secure.key, type: "u8", value: id.tls ? 1 : 0 },
    { key: PROV_KEYS.encrypt.key, type: "u8", value: id.payload ? 1 : 0 },
  ];
  if (id.site !== undefined) out.push({ key: PROV_KEYS.site.key, type: "string", value: id.site });
  if (id.failover && id.failover.length > 0)
    out.push({ key: PROV_KEYS.brokers.key, type: "string", value: formatBrokerList(id.failover) });
  if (id.payload) {
    out.push({ key: PROV_KEYS.keyId.key, type: "i32", value: id.payload.keyId });
    out.push({ key: PROV_KEYS.payloadKey.key, type: "blob", value: id.payload.key });
  }
  if (id.tls) {
    out.push({ key: PROV_KEYS.caDer.key, type: "blob", value: id.tls.caDer });
    out.push({ key: PROV_KEYS.certDer.key, type: "blob", value: id.tls.certDer });
    out.push({ key: PROV_KEYS.keyDer.key, type: "blob", value: id.tls.keyDer });
    out.push({ key: PROV_KEYS.brokerPins.key, type: "blob", value: joinPins(id.tls.brokerPins) });
  }
  if (id.wifi) {
    out.push({ key: PROV_KEYS.wifiSsid.key, type: "string", value: id.wifi.ssid });
    if (id.wifi.psk !== undefined)
      out.push({ key: PROV_KEYS.wifiPsk.key, type: "string", value: id.wifi.psk });
  }
  if (boot !== undefined) out.push({ key: PROV_KEYS.boot.key, type: "i32", value: boot });
  return out;
}

/** Splits `mqtt://host`, `mqtts://host:8883` (no URL class under XS). */
export function parseBrokerUrl(url: string): { tls: boolean; host: string; port?: number } | null {
  const m = /^(mqtts?):\/\/([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?\/?$/.exec(url);
  if (!m || m[1] === undefined || m[2] === undefined) return null;
  const out: { tls: boolean; host: string; port?: number } = { tls: m[1] === "mqtts", host: m[2] };
  if (m[3] !== undefined) {
    const port = Number(m[3]);
    if (port < 1 || port > 65535) return null;
    out.port = port;
  }
  return out;
}

/** WPA2-PSK: an 8..63 character passphrase or 64 hex digits. */
export function wifiPskProblem(psk: string): string | null {
  if (/^[0-9A-Fa-f]{64}$/.test(psk)) return null;
  if (psk.length < 8 || psk.length > 63) return "must be 8..63 characters or 64 hex digits";
  return null;
}

function joinPins(pins: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pins.length * PIN_BYTES);
  pins.forEach((pin, i) => out.set(pin, i * PIN_BYTES));
  return out;
}

function utf8Length(s: string): number {
  return encodeUtf8(s).length;
}

/** Reads typed values and records what is missing or mistyped. */
class FieldReader {
  readonly #get: NvsGetter;
  readonly #errors: IdentityError[];

  constructor(get: NvsGetter, errors: IdentityError[]) {
    this.#get = get;
    this.#errors = errors;
  }

  invalid(spec: NvsKeySpec, message: string): void {
    this.#errors.push({ key: spec.key, code: "invalid", message: `${spec.key} ${message}` });
  }

  string(spec: NvsKeySpec, required: boolean): string | undefined {
    const v = this.#read(spec, required);
    if (v === undefined) return undefined;
    if (typeof v !== "string") return this.#wrongType(spec, v);
    if (utf8Length(v) + 1 > NVS_STRING_MAX_BYTES) {
      this.invalid(spec, `longer than ${NVS_STRING_MAX_BYTES - 1} bytes`);
      return undefined;
    }
    return v;
  }

  i32(spec: NvsKeySpec, required: boolean): number | undefined {
    const v = this.#read(spec, required);
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff)
      return this.#wrongType(spec, v);
    return v;
  }

  /** A u8 flag: Moddable hands it back as a boolean, a host-side image reader as 0/1. */
  flag(spec: NvsKeySpec, required: boolean): boolean | undefined {
    const v = this.#read(spec, required);
    if (v === undefined) return undefined;
    if (typeof v === "boolean") return v;
    if (v === 0 || v === 1) return v === 1;
    return this.#wrongType(spec, v);
  }

  blob(spec: NvsKeySpec, required: boolean): Uint8Array | undefined {
    const v = this.#read(spec, required);
    if (v === undefined) return undefined;
    let bytes: Uint8Array;
    if (v instanceof ArrayBuffer) bytes = new Uint8Array(v);
    else if (v instanceof Uint8Array) bytes = v;
    else return this.#wrongType(spec, v);
    if (bytes.length === 0 || bytes.length > BLOB_MAX_BYTES) {
      this.invalid(spec, `must be 1..${BLOB_MAX_BYTES} bytes, is ${bytes.length}`);
      return undefined;
    }
    return bytes;
  }

  #read(spec: NvsKeySpec, required: boolean): unknown {
    const v = this.#get(spec.key);
    if (v === undefined || v === null) {
      if (required)
        this.#errors.push({
          key: spec.key,
          code: "missing",
          message: `${spec.key} (${spec.type}) is missing`,
        });
      return undefined;
    }
    return v;
  }

  #wrongType(spec: NvsKeySpec, v: unknown): undefined {
    const got = v instanceof ArrayBuffer || v instanceof Uint8Array ? "blob" : typeof v;
    // The value itself is never echoed: it may be a secret.
    this.#errors.push({
      key: spec.key,
      code: "wrong_type",
      message: `${spec.key} should be ${spec.type}, is ${got}`,
    });
    return undefined;
  }
}

/**
 * The second identity slot for certificate rotation over the downlink (trust-slots.ts). Slot 0 is the
 * provisioned `cert_der`, `key_der`, `broker_pins`, `key_id`, `payload_key`; slot 1 lives in these keys. `slot` says which one the
 * board uses, `slot_try` which one it is trying (-1: none), `slot_fails` how many connections the tried slot
 * has failed, `trust_rot` the last rotation number applied (a replayed older rotation is refused).
 */
export const TRUST_SLOT_KEYS = {
  certDer: {
    key: "cert_der_b",
    type: "blob",
    required: "optional",
    secret: false,
    description: "client certificate of slot 1, DER",
  },
  keyDer: {
    key: "key_der_b",
    type: "blob",
    required: "optional",
    secret: true,
    description: "client RSA private key of slot 1, PKCS#8 DER",
  },
  brokerPins: {
    key: "broker_pins_b",
    type: "blob",
    required: "optional",
    secret: false,
    description: "broker key pins of slot 1",
  },
  keyId: {
    key: "key_id_b",
    type: "i32",
    required: "optional",
    secret: false,
    description: "payload key id of slot 1",
  },
  payloadKey: {
    key: "payload_key_b",
    type: "blob",
    required: "optional",
    secret: true,
    description: "AES-256 payload key of slot 1 (sealing once slot 1 is in use)",
  },
  active: {
    key: "slot",
    type: "i32",
    required: "optional",
    secret: false,
    description: "identity slot in use, 0 or 1 (absent: 0)",
  },
  trying: {
    key: "slot_try",
    type: "i32",
    required: "optional",
    secret: false,
    description: "slot being tried, or -1",
  },
  fails: {
    key: "slot_fails",
    type: "i32",
    required: "optional",
    secret: false,
    description: "failed connections of the tried slot",
  },
  rotation: {
    key: "trust_rot",
    type: "i32",
    required: "optional",
    secret: false,
    description: "last rotation number applied",
  },
  requestRotation: {
    key: "req_rot",
    type: "i32",
    required: "optional",
    secret: false,
    description: "rotation whose key request the board answered (its key and CSR below), or 0",
  },
  requestKey: {
    key: "req_key",
    type: "blob",
    required: "optional",
    secret: true,
    description: "PKCS#8 DER of the key made for that request, until its certificate is staged",
  },
  requestCsr: {
    key: "req_csr",
    type: "blob",
    required: "optional",
    secret: false,
    description: "the sealed answer (CSR) published for that request, sent again unchanged if asked again",
  },
} as const satisfies Record<string, NvsKeySpec>;
