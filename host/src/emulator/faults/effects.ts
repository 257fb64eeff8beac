/** What a board's active faults amount to at one simulated instant. */
import type { ChannelName } from "../../../../firmware/src/telemetry/channels";
import type { SensorFailure } from "../../../../firmware/src/plant/instrument-signals";
import { NO_EFFECTS } from "../../../../firmware/src/plant/plant-instruments";
import type { PhysicsEffects } from "../../../../firmware/src/plant/plant-instruments";
import type { ResolvedFault } from "./scenario";

const active = (f: ResolvedFault, t: number): boolean => t >= f.at && t < f.end;

export function physicsEffectsAt(faults: readonly ResolvedFault[], t: number): PhysicsEffects {
  let fx: PhysicsEffects | undefined;
  for (const f of faults) {
    if (!active(f, t)) continue;
    fx ??= { crossoverFactor: 1, voltageFlicker: 0, failures: {}, trip: false };
    switch (f.type) {
      case "purity_drop":
        fx.crossoverFactor = Math.max(fx.crossoverFactor, f.factor ?? 60);
        break;
      case "voltage_flicker":
        fx.voltageFlicker = Math.max(fx.voltageFlicker, f.amplitude ?? 0.05);
        break;
      case "sensor_failure":
        (fx.failures as Record<ChannelName, SensorFailure>)[f.channel!] = f.mode!;
        break;
      case "trip":
        fx.trip = true;
        break;
      default:
        break;
    }
  }
  return fx ?? NO_EFFECTS;
}

/** Seconds the board's clock is off at simulated time t. */
export function clockSkewAt(faults: readonly ResolvedFault[], t: number): number {
  let skew = 0;
  for (const f of faults) if (f.type === "clock_skew" && active(f, t)) skew += f.offsetS ?? 0;
  return skew;
}
