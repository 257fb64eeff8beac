// Fleet manifests: format, schema, validation, and the default dev fleet.
import { join } from "node:path";
import { repoRoot } from "../../shared/state-dir";
export { isValidDeviceId, deviceIdProblem, generateDeviceIds, DEVICE_ID_MAX_LENGTH } from "./device-id";
export { fleetManifestSchema, SENSOR_DRIVERS } from "./schema";
export {
  loadManifest,
  parseManifest,
  validateManifest,
  formatOf,
  ManifestError,
  type FleetManifest,
  type DeviceSpec,
  DEFAULT_INTERVAL_MS,
  type DeviceProvisioning,
  type SiteSpec,
  type SensorSpec,
  type SensorDriver,
  type DeviceKeyType,
  type ManifestResult,
  type ManifestFormat,
} from "./manifest";
export { setProvisioning, type ProvisioningChanges } from "./provisioning";

/** The tiny fleet `setup` and the dev stack use when no manifest is given. */
export const DEV_FLEET_PATH = join(repoRoot(), "manifests", "fleet.dev.json");
export const EXAMPLE_FLEET_PATH = join(repoRoot(), "manifests", "fleet.example.json");
