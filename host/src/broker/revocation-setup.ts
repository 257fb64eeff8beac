import { access, constants, readFile } from "node:fs/promises";
import { issueService } from "../../../pki/src/identities";
import { PkiError } from "../../../pki/src/errors";
import { pkiPaths } from "../../../pki/src/paths";
import {
  BROKER_ADMIN_IDENTITY,
  RevocationSync,
  findDynsecPlugin,
  type PreparedRevocation,
} from "./revocation-sync";

const readable = (p: string): Promise<boolean> =>
  access(p, constants.R_OK).then(
    () => true,
    () => false,
  );

/**
 * What a launcher (`npm run broker`, `npm run stack`) needs to cut off revoked identities without a restart:
 * the plugin, its file, and the broker-admin identity (issued here when the CA is on this host). Undefined
 * when any of them is missing: then every revocation restarts the broker (crl-keeper.ts), which is slower
 * for the fleet but just as safe.
 */
export async function prepareLauncherRevocation(o: {
  stateDir: string;
  dataDir: string;
  log: (line: string) => void;
}): Promise<
  { prepared: PreparedRevocation; attach(brokerUrl: string): Promise<RevocationSync> } | undefined
> {
  const paths = pkiPaths(o.stateDir);
  const admin = paths.service(BROKER_ADMIN_IDENTITY);
  if (!(await readable(admin.key)) && (await readable(paths.issuingKey))) {
    await issueService({ stateDir: o.stateDir, name: BROKER_ADMIN_IDENTITY }).catch((err: unknown) => {
      if (!(err instanceof PkiError && err.code === "exists")) throw err;
    });
  }
  const plugin = await findDynsecPlugin();
  if (!plugin || !(await readable(admin.key))) {
    o.log(
      `revocation: ${plugin ? `no ${BROKER_ADMIN_IDENTITY} identity` : "no mosquitto_dynamic_security.so"}; a revocation restarts the broker`,
    );
    return undefined;
  }
  const prepared = await RevocationSync.prepare(o.dataDir, paths.revocations, plugin);
  return {
    prepared,
    attach: async (brokerUrl) =>
      prepared.attach({
        revocationsPath: paths.revocations,
        brokerUrl,
        ca: await readFile(paths.caBundle, "utf8"),
        admin: { certPem: await readFile(admin.cert, "utf8"), keyPem: await readFile(admin.key, "utf8") },
        log: o.log,
      }),
  };
}
