import type { CaDatabase, IdentityKind } from "./database";
import { PUBLIC_MODE, type FileWrite } from "./store";

/**
 * What a broker needs to enforce revocation without restarting (public/revocations.json): every revoked
 * certificate with the identity it belonged to, and the client identities left without any unrevoked
 * certificate. Mosquitto knows a connected client by its certificate's CN only, so a broker can cut off
 * a whole identity at once (host/src/broker/revocation-sync.ts) but a single serial only by reloading
 * the CRL.
 */
export interface RevocationList {
  version: 1;
  crlNumber: number;
  revoked: { serial: string; kind: IdentityKind; name: string }[];
  /** Device and service names (certificate CNs) whose every certificate is revoked. */
  denied: string[];
}

export function revocationList(db: CaDatabase): RevocationList {
  const clients = db.issued.filter((r) => r.kind === "device" || r.kind === "service");
  const live = new Set(clients.filter((r) => !r.revoked).map((r) => r.name));
  const denied = new Set(clients.filter((r) => r.revoked && !live.has(r.name)).map((r) => r.name));
  return {
    version: 1,
    crlNumber: db.crlNumber,
    revoked: db.issued
      .filter((r) => r.revoked)
      .map((r) => ({ serial: r.serial, kind: r.kind, name: r.name })),
    denied: [...denied].sort(),
  };
}

/** The list as one more file of a writeFiles batch, so it never disagrees with the database and the CRL. */
export function revocationsFile(path: string, db: CaDatabase): FileWrite {
  return {
    path,
    data: `${JSON.stringify(revocationList(db), null, 1)}\n`,
    mode: PUBLIC_MODE,
    how: "replace",
  };
}
