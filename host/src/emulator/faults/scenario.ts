/**
 * Fault scenarios: what goes wrong, when, and to which boards. Written by hand as JSON or YAML and validated,
 * or drawn at random from the run's seed. Times are seconds since the run started; for faults that change
 * readings, that is the boards' simulated sampling time, so a fault shows up in the data at exactly its time.
 */
import { Ajv } from "ajv";
import type { JSONSchemaType } from "ajv";
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import type { ChannelName } from "../../../../firmware/src/telemetry/channels";
import { CHANNEL_NAMES } from "../../../../firmware/src/telemetry/channels";
import type { SensorFailure } from "../../../../firmware/src/plant/instrument-signals";
import { Prng } from "../../../../firmware/src/plant/prng";

export type FaultType =
  | "purity_drop"
  | "voltage_flicker"
  | "sensor_failure"
  | "trip"
  | "clock_skew"
  | "network_drop"
  | "reconnect_storm"
  | "power_cut";

export const FAULT_TYPES: readonly FaultType[] = [
  "purity_drop",
  "voltage_flicker",
  "sensor_failure",
  "trip",
  "clock_skew",
  "network_drop",
  "reconnect_storm",
  "power_cut",
];
/** Faults that change what boards measure (applied by simulated time); the rest act on connections and clocks. */
export const PHYSICS_FAULTS: readonly FaultType[] = [
  "purity_drop",
  "voltage_flicker",
  "sensor_failure",
  "trip",
];

export interface FaultSpec {
  type: FaultType;
  /** Seconds after the run started. */
  at: number;
  /**
   * Seconds; omitted: until the end of the run (network faults: the drop itself is instantaneous; power_cut:
   * how long the board stays dark, default 5 s, before it boots again with the next boot number).
   */
  duration?: number;
  /** Which boards: explicit ids, or `count` boards drawn with the seed, or `all`. Default: one board. */
  devices?: string[];
  count?: number;
  all?: boolean;
  /** purity_drop: crossover multiplier (default 60: purity at rated load falls from ~99.995 % to ~99.7 %). */
  factor?: number;
  /** voltage_flicker: relative amplitude of the spikes (default 0.05). */
  amplitude?: number;
  /** sensor_failure: the channel and how its sensor fails. */
  channel?: ChannelName;
  mode?: SensorFailure;
  /** clock_skew: seconds added to the board's clock (negative: behind). */
  offsetS?: number;
  /** network_drop: seconds the board stays away before it tries again (default: its normal backoff). */
  offlineS?: number;
}

export interface Scenario {
  name?: string;
  faults: FaultSpec[];
}

const schema: JSONSchemaType<Scenario> = {
  type: "object",
  additionalProperties: false,
  required: ["faults"],
  properties: {
    name: { type: "string", nullable: true },
    faults: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["type", "at"],
        properties: {
          type: { type: "string", enum: [...FAULT_TYPES] },
          at: { type: "number", minimum: 0 },
          duration: { type: "number", exclusiveMinimum: 0, nullable: true },
          devices: { type: "array", items: { type: "string" }, minItems: 1, nullable: true },
          count: { type: "integer", minimum: 1, nullable: true },
          all: { type: "boolean", nullable: true },
          factor: { type: "number", minimum: 1, nullable: true },
          amplitude: { type: "number", exclusiveMinimum: 0, maximum: 1, nullable: true },
          channel: { type: "string", enum: [...CHANNEL_NAMES], nullable: true },
          mode: { type: "string", enum: ["stuck", "open_circuit", "loop_broken"], nullable: true },
          offsetS: { type: "number", nullable: true },
          offlineS: { type: "number", minimum: 0, nullable: true },
        },
      },
    },
  },
};

const validate = new Ajv({ allErrors: true }).compile(schema);

/** Which failure modes each channel's sensor can show (RTD vs 4–20 mA loop vs power monitor). */
export const SENSOR_FAILURE_MODES: Readonly<Record<ChannelName, readonly SensorFailure[]>> = {
  temperature_c: ["stuck", "open_circuit"],
  pressure_bar: ["stuck", "loop_broken"],
  h2_flow_sccm: ["stuck", "loop_broken"],
  purity_pct: ["stuck", "loop_broken"],
  voltage_v: ["stuck"],
  current_a: ["stuck"],
};

export function parseScenario(doc: unknown, source = "scenario"): Scenario {
  if (!validate(doc)) {
    const why = (validate.errors ?? [])
      .map((e) => `${e.instancePath || "/"} ${e.message ?? "is invalid"}`)
      .join("; ");
    throw new Error(`${source}: ${why}`);
  }
  doc.faults.forEach((f, i) => {
    const where = `${source}: faults[${i}] (${f.type})`;
    const targets = [f.devices !== undefined, f.count !== undefined, f.all === true].filter(Boolean).length;
    if (targets > 1) throw new Error(`${where}: give only one of devices, count, all`);
    if (f.type === "sensor_failure") {
      if (!f.channel || !f.mode) throw new Error(`${where}: needs channel and mode`);
      if (!SENSOR_FAILURE_MODES[f.channel].includes(f.mode))
        throw new Error(
          `${where}: the ${f.channel} sensor cannot fail as ${f.mode} (possible: ${SENSOR_FAILURE_MODES[f.channel].join(", ")})`,
        );
    } else if (f.channel || f.mode) throw new Error(`${where}: channel/mode only apply to sensor_failure`);
    if (f.type === "clock_skew" && f.offsetS === undefined) throw new Error(`${where}: needs offsetS`);
  });
  return doc;
}

export async function loadScenario(path: string): Promise<Scenario> {
  const text = await readFile(path, "utf8");
  let doc: unknown;
  try {
    doc = /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw new Error(
      `${path}: not valid ${/\.ya?ml$/i.test(path) ? "YAML" : "JSON"}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return parseScenario(doc, path);
}

/** A fault bound to concrete boards. */
export interface ResolvedFault extends FaultSpec {
  id: number;
  targets: string[];
  /** End time in seconds (Infinity: until the run ends). */
  end: number;
}

export function resolveScenario(
  scenario: Scenario,
  deviceIds: readonly string[],
  seed: number | string,
): ResolvedFault[] {
  const rng = new Prng(`${seed}/faults`);
  const known = new Set(deviceIds);
  return scenario.faults.map((f, id) => {
    let targets: string[];
    if (f.all) targets = [...deviceIds];
    else if (f.devices) {
      for (const d of f.devices)
        if (!known.has(d)) throw new Error(`scenario faults[${id}]: no board "${d}" in this fleet`);
      targets = [...f.devices];
    } else targets = sample(deviceIds, Math.min(f.count ?? 1, deviceIds.length), rng);
    return {
      ...f,
      id,
      targets,
      end: f.duration !== undefined ? f.at + f.duration : Number.POSITIVE_INFINITY,
    };
  });
}

function sample(ids: readonly string[], n: number, rng: Prng): string[] {
  const pool = [...ids];
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(rng.next() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, n).sort();
}

/**
 * Random faults: a Poisson stream at `perMinute` over the run, each a random type on one random board,
 * lasting 10 s to 2 min. Same seed, same faults.
 */
export function randomScenario(seed: number | string, perMinute: number, horizonS: number): Scenario {
  const rng = new Prng(`${seed}/random-faults`);
  const faults: FaultSpec[] = [];
  if (perMinute <= 0) return { name: "random", faults };
  let t = rng.exponential(60 / perMinute);
  while (t < horizonS) {
    // Not power_cut: it came later, and drawing from a longer list would change every seed's faults.
    const type = rng.pick(FAULT_TYPES.filter((x) => x !== "reconnect_storm" && x !== "power_cut"));
    const f: FaultSpec = { type, at: Math.round(t * 10) / 10, duration: Math.round(rng.uniform(10, 120)) };
    if (type === "sensor_failure") {
      f.channel = rng.pick(CHANNEL_NAMES);
      f.mode = rng.pick(SENSOR_FAILURE_MODES[f.channel]);
    }
    if (type === "clock_skew") f.offsetS = Math.round(rng.uniform(-300, 300));
    if (type === "network_drop") delete f.duration;
    faults.push(f);
    t += rng.exponential(60 / perMinute);
  }
  return { name: "random", faults };
}
