import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { Ajv, type ErrorObject } from "ajv";
import { parse as parseYaml } from "yaml";
import type { ChannelName } from "../../firmware/src/telemetry/channels";
import { deviceIdProblem } from "./device-id";
import { fleetManifestSchema } from "./schema";
import type { SENSOR_DRIVERS } from "./schema";

export type SensorDriver = (typeof SENSOR_DRIVERS)[number];
export type DeviceKeyType = "rsa-2048" | "p256";

export interface SensorSpec {
  driver: SensorDriver;
  address?: number;
  input?: number;
  rangeLow?: number;
  rangeHigh?: number;
  calibration?: { gain: number; offset: number };
}

export interface SiteSpec {
  id: string;
  name?: string;
  technology?: "pem" | "alkaline" | "soec" | "aem";
  timezone?: string;
}

/** Which board holds a device's identity, as `npm run provision` recorded it; public facts only. */
export interface DeviceProvisioning {
  /** Factory MAC, lower-case `aa:bb:cc:dd:ee:ff`. */
  mac: string;
  certSerial: string;
  /** SHA-256 of the certificate's DER, hex. */
  certSha256: string;
  /** Payload key id, null when payloads are not sealed. */
  keyId: number | null;
  /** ISO 8601 UTC. */
  at: string;
}

/** A device with the manifest's defaults applied. */
export interface DeviceSpec {
  id: string;
  site: string;
  board: string;
  keyType: DeviceKeyType;
  /** Milliseconds between readings, as provisioned (default DEFAULT_INTERVAL_MS). */
  intervalMs: number;
  description?: string;
  sensors: Partial<Record<ChannelName, SensorSpec>>;
  provisioning?: DeviceProvisioning;
}

/** A device's interval when neither it nor the defaults name one: `npm run provision`'s default. */
export const DEFAULT_INTERVAL_MS = 5000;

export interface FleetManifest {
  version: 1;
  fleet: string;
  description?: string;
  sites: SiteSpec[];
  devices: DeviceSpec[];
}

interface RawManifest {
  version: 1;
  fleet: string;
  description?: string;
  sites: SiteSpec[];
  defaults?: {
    board?: string;
    keyType?: DeviceKeyType;
    intervalMs?: number;
    sensors?: Partial<Record<ChannelName, SensorSpec>>;
  };
  devices: (Omit<DeviceSpec, "board" | "keyType" | "intervalMs" | "sensors"> & {
    board?: string;
    keyType?: DeviceKeyType;
    intervalMs?: number;
    sensors?: DeviceSpec["sensors"];
  })[];
}

/** A manifest that cannot be used; `errors` has one line per problem, `message` the first (and a count). */
export class ManifestError extends Error {
  readonly errors: string[];
  constructor(source: string, errors: string[]) {
    super(
      `${source}: ${errors[0] ?? "invalid manifest"}${errors.length > 1 ? ` (and ${errors.length - 1} more problem${errors.length > 2 ? "s" : ""})` : ""}`,
    );
    this.name = "ManifestError";
    this.errors = errors.map((e) => `${source}: ${e}`);
  }
}

// strictRequired off: the `then` branch names properties declared one level up, which is valid JSON Schema.
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
const validateSchema = ajv.compile(fleetManifestSchema);

export type ManifestResult = { ok: true; value: FleetManifest } | { ok: false; errors: string[] };

/** Schema check, then what a schema cannot say: unique ids, known sites, a board for every device. */
export function validateManifest(data: unknown): ManifestResult {
  if (!validateSchema(data)) return { ok: false, errors: schemaErrors(validateSchema.errors ?? [], data) };
  const raw = data as unknown as RawManifest;
  const errors: string[] = [];
  const sites = new Set<string>();
  raw.sites.forEach((s, i) => {
    if (sites.has(s.id)) errors.push(`sites[${i}].id: duplicate site id "${s.id}"`);
    sites.add(s.id);
  });
  const ids = new Map<string, number>();
  const macs = new Map<string, number>();
  const devices: DeviceSpec[] = raw.devices.map((d, i) => {
    const problem = deviceIdProblem(d.id);
    if (problem) errors.push(`devices[${i}].id: ${problem}`);
    const key = d.id.toLowerCase();
    const first = ids.get(key);
    if (first !== undefined)
      errors.push(
        `devices[${i}].id: duplicate device id "${d.id}" (also devices[${first}]${raw.devices[first]?.id !== d.id ? ", ignoring case" : ""})`,
      );
    else ids.set(key, i);
    if (!sites.has(d.site))
      errors.push(`devices[${i}].site: unknown site "${d.site}" (sites: ${[...sites].join(", ")})`);
    if (d.provisioning !== undefined) {
      // One board cannot hold two identities: a manifest saying so is wrong about at least one of them.
      const other = macs.get(d.provisioning.mac);
      if (other !== undefined)
        errors.push(
          `devices[${i}].provisioning.mac: board ${d.provisioning.mac} is also recorded on devices[${other}] ("${raw.devices[other]?.id ?? ""}")`,
        );
      else macs.set(d.provisioning.mac, i);
    }
    const board = d.board ?? raw.defaults?.board;
    if (!board) errors.push(`devices[${i}].board: missing (and no defaults.board)`);
    return {
      id: d.id,
      site: d.site,
      board: board ?? "",
      keyType: d.keyType ?? raw.defaults?.keyType ?? "rsa-2048",
      intervalMs: d.intervalMs ?? raw.defaults?.intervalMs ?? DEFAULT_INTERVAL_MS,
      ...(d.description !== undefined ? { description: d.description } : {}),
      sensors: { ...(raw.defaults?.sensors ?? {}), ...(d.sensors ?? {}) },
      ...(d.provisioning !== undefined ? { provisioning: d.provisioning } : {}),
    };
  });
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    value: {
      version: 1,
      fleet: raw.fleet,
      ...(raw.description !== undefined ? { description: raw.description } : {}),
      sites: raw.sites,
      devices,
    },
  };
}

export type ManifestFormat = "json" | "yaml";

export function formatOf(path: string): ManifestFormat {
  const ext = extname(path).toLowerCase();
  return ext === ".yaml" || ext === ".yml" ? "yaml" : "json";
}

/** Parses and validates manifest text; throws ManifestError with every problem found. */
export function parseManifest(text: string, format: ManifestFormat, source = "manifest"): FleetManifest {
  let data: unknown;
  try {
    data = format === "yaml" ? parseYaml(text, { uniqueKeys: true }) : JSON.parse(text);
  } catch (err) {
    const why = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new ManifestError(source, [`not valid ${format.toUpperCase()}: ${why}`]);
  }
  const result = validateManifest(data);
  if (!result.ok) throw new ManifestError(source, result.errors);
  return result.value;
}

export async function loadManifest(path: string): Promise<FleetManifest> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ManifestError(path, [
      code === "ENOENT"
        ? "no such file"
        : code === "EACCES"
          ? "permission denied"
          : `cannot read: ${String(err)}`,
    ]);
  }
  return parseManifest(text, formatOf(path), path);
}

function schemaErrors(errors: ErrorObject[], data: unknown): string[] {
  const out = errors
    // `if`/`then` failures repeat the missing-property error that follows them, and a bad property
    // name is reported twice (by its enum and by propertyNames): keep the readable one of each.
    .filter((e) => e.keyword !== "if" && !(e.propertyName !== undefined && e.keyword !== "propertyNames"))
    .map((e) => {
      const at = pointerToPath(e.instancePath) || "(top level)";
      switch (e.keyword) {
        case "additionalProperties":
          return `${at}: unknown property "${String(e.params.additionalProperty)}"`;
        case "required":
          return `${at}: missing property "${String(e.params.missingProperty)}"`;
        case "enum":
          return `${at}: ${JSON.stringify(valueAt(data, e.instancePath))} is not one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`;
        case "propertyNames":
          return `${at}: unknown channel "${String(e.params.propertyName)}"`;
        case "pattern": {
          const value = valueAt(data, e.instancePath);
          if (/^devices\[\d+\]\.id$/.test(at))
            return `${at}: ${deviceIdProblem(value) ?? "invalid device id"}`;
          return `${at}: ${JSON.stringify(value)} does not match ${String(e.params.pattern)}`;
        }
        default:
          return `${at}: ${e.message ?? "invalid"}`;
      }
    });
  return [...new Set(out)];
}

function pointerToPath(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), "");
}

function valueAt(data: unknown, pointer: string): unknown {
  let cur: unknown = data;
  for (const part of pointer.split("/").slice(1)) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return cur;
}
