/**
 * Gathers one board's identity: its certificate and PKCS#8 key from the fleet PKI (refused if revoked or
 * expired), the CA it must trust, and its payload key derived from the fleet secret of the chosen secret id
 * and the generation reserved for this provisioning (payload-grants.ts).
 * The result holds secrets: it goes into the NVS image and nowhere else.
 */
import { createHash } from "node:crypto";
import { exportDeviceBundle, PkiError, provisionedBrokerPins } from "../../../pki/src/index";
import {
  deriveDeviceKey,
  loadPayloadMaster,
  payloadMasterExists,
  payloadMasterPath,
} from "../crypto/device-keys";
import {
  parseBrokerUrl,
  wifiPskProblem,
  INTERVAL_MS_MAX,
  INTERVAL_MS_MIN,
} from "../../../firmware/src/identity/nvs-layout";
import type { DeviceIdentity } from "../../../firmware/src/identity/nvs-layout";
import { ProvisionError } from "./errors";
import { formatBrokerList, parseBrokerList } from "../../../firmware/src/identity/broker-list";

export interface IdentitySettings {
  broker: string;
  /** Further brokers (the other nodes of a cluster), mqtts:// URLs: NVS key `brokers`, tried after `broker`. */
  failover?: readonly string[];
  intervalMs: number;
  site?: string;
  /** Payload key id, or null to send payloads unencrypted (TLS still protects them in transit). */
  keyId: number | null;
  wifi?: { ssid: string; psk?: string };
}

/** What the bindings record about the certificate: public facts only. */
export interface CertFacts {
  serial: string;
  sha256: string;
  notAfter: string;
}

/** The payload key generation reserved for this provisioning, and the envelope key id it is known by. */
export interface KeyGeneration {
  generation: number;
  keyId: number;
}

/**
 * Without `generation` (a dry run) the payload key is generation 0 under key id = secret id: what boards
 * provisioned before generations existed carry. Never write that to a board.
 */
export async function loadIdentity(
  stateDir: string,
  deviceId: string,
  s: IdentitySettings,
  generation?: KeyGeneration,
): Promise<{ identity: DeviceIdentity; cert: CertFacts }> {
  const url = parseBrokerUrl(s.broker);
  if (!url)
    throw new ProvisionError(
      "bad_input",
      `--broker "${s.broker}" is not mqtt://host[:port] or mqtts://host[:port]`,
    );
  if (!url.tls)
    throw new ProvisionError(
      "bad_input",
      `--broker must be mqtts:// (mutual TLS); "${s.broker}" would send the identity's traffic in clear`,
    );
  const home = { host: url.host, port: url.port ?? 8883 };
  const failover = (s.failover ?? []).map((u) => {
    const f = parseBrokerUrl(u);
    if (!f || !f.tls)
      throw new ProvisionError(
        "bad_input",
        `--broker "${u}" is not mqtts://host[:port] (every broker needs mutual TLS)`,
      );
    return { host: f.host, port: f.port ?? 8883 };
  });
  const seen = new Set<string>();
  for (const b of [home, ...failover]) {
    const k = `${b.host}:${b.port}`;
    if (seen.has(k)) throw new ProvisionError("bad_input", `--broker ${k} is given twice`);
    seen.add(k);
  }
  const listProblem = parseBrokerList(formatBrokerList(failover));
  if (!listProblem.ok) throw new ProvisionError("bad_input", `--broker: ${listProblem.problem}`);
  if (!Number.isInteger(s.intervalMs) || s.intervalMs < INTERVAL_MS_MIN || s.intervalMs > INTERVAL_MS_MAX) {
    throw new ProvisionError("bad_input", `--interval must be ${INTERVAL_MS_MIN}..${INTERVAL_MS_MAX} ms`);
  }
  if (s.wifi?.psk !== undefined) {
    const problem = wifiPskProblem(s.wifi.psk);
    if (problem) throw new ProvisionError("bad_input", `the Wi-Fi passphrase ${problem}`);
  }
  let bundle;
  try {
    bundle = await exportDeviceBundle(stateDir, deviceId);
  } catch (err) {
    if (err instanceof PkiError)
      throw new ProvisionError("identity", `identity "${deviceId}": ${err.message}`);
    throw err;
  }
  let brokerPins: Uint8Array[];
  try {
    brokerPins = await provisionedBrokerPins(stateDir);
  } catch (err) {
    if (err instanceof PkiError) throw new ProvisionError("identity", `broker key pins: ${err.message}`);
    throw err;
  }
  let payload: DeviceIdentity["payload"] = null;
  if (s.keyId !== null) {
    const master = await requireFleetSecret(stateDir, s.keyId);
    payload = generation
      ? { keyId: generation.keyId, key: deriveDeviceKey(master, deviceId, generation.generation) }
      : { keyId: s.keyId, key: deriveDeviceKey(master, deviceId) };
  }
  const identity: DeviceIdentity = {
    deviceId,
    broker: s.broker,
    brokerHost: home.host,
    port: home.port,
    ...(failover.length > 0 ? { failover } : {}),
    intervalMs: s.intervalMs,
    // The broker presents leaf + issuing CA; the board anchors the chain at the root.
    // The pins: the board refuses any server whose key is neither the broker's current nor its next one.
    tls: {
      caDer: bundle.rootDer,
      certDer: bundle.certDer,
      keyDer: bundle.keyDer,
      brokerPins,
    },
    payload,
    wifi: s.wifi ? { ...s.wifi } : null,
  };
  if (s.site !== undefined) identity.site = s.site;
  return {
    identity,
    cert: {
      serial: bundle.serial,
      sha256: createHash("sha256").update(bundle.certDer).digest("hex"),
      notAfter: bundle.notAfter.toISOString(),
    },
  };
}

/**
 * Provisioning never creates a fleet secret: one made here would exist only on this host, so the ingest
 * could open none of the boards sealed under it (every reading dead-lettered as `tag_mismatch`).
 */
export async function requireFleetSecret(stateDir: string, keyId: number): Promise<Uint8Array> {
  if (!(await payloadMasterExists(stateDir, keyId))) {
    throw new ProvisionError(
      "no_payload_secret",
      `no fleet payload secret ${keyId} at ${payloadMasterPath(stateDir, keyId)}: provisioning does not create one. ` +
        "Run `npm run setup` on the ingest's host and copy its secrets folder here (mode 0600), " +
        "choose a --key-id that exists, or provision with --no-encrypt",
    );
  }
  try {
    return await loadPayloadMaster(stateDir, keyId);
  } catch (err) {
    throw new ProvisionError("no_payload_secret", (err as Error).message);
  }
}
