/** Reads the client certificates the fleet PKI holds (`<state>/pki/devices`, `services`), archived ones included. */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { PkiPaths } from "../../../../pki/src/index";
import type { ClientCertificate, ClientKind } from "./fleet-users";

async function subdirs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * A rotated device keeps its previous certificate in `archive/<serial>/` and that certificate stays valid
 * until revoked (pki rotate without --revoke-old), so it is read too: fleetUsers() pins it while it is valid.
 */
async function identityCerts(kind: ClientKind, root: string): Promise<ClientCertificate[]> {
  const out: ClientCertificate[] = [];
  for (const name of await subdirs(root)) {
    const dir = join(root, name);
    const files = [
      join(dir, "cert.pem"),
      ...(await subdirs(join(dir, "archive"))).map((s) => join(dir, "archive", s, "cert.pem")),
    ];
    for (const f of files) {
      const certPem = await readIfExists(f);
      if (certPem !== undefined) out.push({ kind, name, certPem });
    }
  }
  return out;
}

export async function pkiClientCertificates(
  paths: Pick<PkiPaths, "devicesDir" | "servicesDir">,
): Promise<ClientCertificate[]> {
  return [
    ...(await identityCerts("service", paths.servicesDir)),
    ...(await identityCerts("device", paths.devicesDir)),
  ];
}
