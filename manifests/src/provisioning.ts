/**
 * Records on a manifest's devices which board holds their identity (`provisioning`), editing the text
 * the user keeps under version control: JSON is rewritten with 2-space indentation, YAML is edited
 * through the `yaml` Document API so comments, key order and styles survive.
 */
import { isMap, isSeq, parseDocument } from "yaml";
import { ManifestError, parseManifest, type DeviceProvisioning, type ManifestFormat } from "./manifest";

/** Per device id: the record to set, or null to remove the device's record (its board now holds another). */
export type ProvisioningChanges = ReadonlyMap<string, DeviceProvisioning | null>;

/**
 * The manifest text with `changes` applied. Refuses a manifest that is invalid before or would be after,
 * and a device id the manifest does not list; the input text is never half-edited (a new string is returned).
 */
export function setProvisioning(
  text: string,
  format: ManifestFormat,
  changes: ProvisioningChanges,
  source = "manifest",
): string {
  parseManifest(text, format, source);
  const out = format === "yaml" ? editYaml(text, changes, source) : editJson(text, changes, source);
  parseManifest(out, format, source);
  return out;
}

function editJson(text: string, changes: ProvisioningChanges, source: string): string {
  const raw = JSON.parse(text) as { devices: Record<string, unknown>[] };
  for (const [id, record] of changes) {
    const device = raw.devices.find((d) => d.id === id);
    if (!device) throw new ManifestError(source, [`no device "${id}" to record provisioning on`]);
    if (record === null) delete device.provisioning;
    else device.provisioning = { ...record };
  }
  return `${JSON.stringify(raw, null, 2)}${text.endsWith("\n") ? "\n" : ""}`;
}

function editYaml(text: string, changes: ProvisioningChanges, source: string): string {
  const doc = parseDocument(text, { uniqueKeys: true });
  const devices = doc.get("devices");
  if (!isSeq(devices)) throw new ManifestError(source, ["devices: not a list"]);
  for (const [id, record] of changes) {
    const index = devices.items.findIndex((item) => isMap(item) && item.get("id") === id);
    if (index < 0) throw new ManifestError(source, [`no device "${id}" to record provisioning on`]);
    if (record === null) doc.deleteIn(["devices", index, "provisioning"]);
    else doc.setIn(["devices", index, "provisioning"], doc.createNode({ ...record }));
  }
  return doc.toString();
}
