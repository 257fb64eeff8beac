// Public API of the fleet PKI. See pki/README.md for the layout, the CA design and the CLI.
export type { KeyType, IdentityPaths, PkiPaths } from "./paths";
export { pkiPaths } from "./paths";
export { ensureDevPki, refreshCrl, refreshCrlIfDue, crlNeedsRefresh, type EnsureDevPkiOptions } from "./dev";
export { createCa, type InitCaOptions } from "./ca";
export { renewIssuingCa, type RenewIssuingResult } from "./issuing-renewal";
export {
  issueBroker,
  issueService,
  issueDevices,
  revokeDevice,
  revokeIdentity,
  revokeSerial,
  rotateDevice,
  certifyDeviceKey,
  checkDeviceIds,
  listDeviceIds,
  DEFAULT_BROKER_HOSTS,
  DEFAULT_SERVICES,
  type IssueDevicesOptions,
  type IssueDevicesResult,
  type IssuedIdentity,
} from "./identities";
export {
  brokerPins,
  provisionedBrokerPins,
  ensureNextBrokerKey,
  rotateBrokerKey,
  nextBrokerKeyPath,
  spkiPin,
  type BrokerPins,
} from "./broker-key";
export { checkDeviceCsr } from "./csr";
export { subjectFor } from "./profiles";
export { exportDeviceBundle, writeDeviceBundle, type DeviceBundle } from "./bundle";
export {
  listIdentities,
  inspect,
  type InventoryRow,
  type CertificateSummary,
  type CertStatus,
} from "./inventory";
export { REVOCATION_REASONS, type RevocationReason, type IdentityKind } from "./database";
export { PkiError, type PkiErrorCode } from "./errors";
export type { Progress } from "./keygen";
export { splitCrls } from "./crl";
export { revocationList, type RevocationList } from "./revocations";
export { isValidDeviceId, deviceIdProblem } from "../../manifests/src/device-id";

import { issueDevices, type IssueDevicesOptions, type IssuedIdentity } from "./identities";

/** One device; fails if it already exists (use rotateDevice, or force). */
export async function issueDevice(
  o: Omit<IssueDevicesOptions, "ids" | "ifExists" | "onProgress"> & { id: string },
): Promise<IssuedIdentity> {
  const { id, ...rest } = o;
  const r = await issueDevices({ ...rest, ids: [id], ifExists: "error" });
  const issued = r.issued[0];
  if (!issued) throw new Error(`device ${id} was not issued`);
  return issued;
}
