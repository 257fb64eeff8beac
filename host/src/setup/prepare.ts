// What every way of running the stack needs first: the dev PKI (CA, broker, service certificates)
// and the fleet's payload secret. Idempotent: existing keys and certificates are never replaced.
import { ensureDevPki, DEFAULT_BROKER_HOSTS, type PkiPaths } from "../../../pki/src/index";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { loadOrCreatePayloadMaster } from "../crypto/device-keys";
import { grantsPath } from "../crypto/payload-grants";

/**
 * Services with their own client certificate (services/<name>/ in the PKI). `monitor` is the read-only
 * observer (e.g. `npm run emulate -- --broker …`), so nothing but the ingest uses the ingest's identity;
 * `broker-admin` is the broker launcher's own, for cutting off revoked identities; `fleet-admin` writes the
 * boards' trust messages (`pki rotate --field`).
 */
export const STACK_SERVICES = ["ingest", "monitor", "telegraf", "broker-admin", "fleet-admin"] as const;
/** The broker's name inside docker-compose's network, besides the local names. */
export const COMPOSE_BROKER_HOST = "mosquitto";
export const PAYLOAD_KEY_ID = 1;

export async function prepareState(stateDir: string, onProgress?: (line: string) => void): Promise<PkiPaths> {
  onProgress?.(
    `PKI: ensuring the CA, the broker certificate and the service certificates (${STACK_SERVICES.join(", ")})`,
  );
  const pki = await ensureDevPki({
    stateDir,
    devices: [],
    services: [...STACK_SERVICES],
    brokerHosts: [...DEFAULT_BROKER_HOSTS, COMPOSE_BROKER_HOST],
  });
  onProgress?.(`payload secret: ensuring key id ${PAYLOAD_KEY_ID}`);
  await loadOrCreatePayloadMaster(stateDir, PAYLOAD_KEY_ID);
  // Made here so that docker (which mounts it into the ingest) does not create it owned by root.
  await mkdir(dirname(grantsPath(stateDir)), { recursive: true });
  return pki;
}
