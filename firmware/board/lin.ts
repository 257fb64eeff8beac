// The Linux simulator "board": simulated instruments in the drivers' shapes, fed by a PEM stack
// model, and the host's network (already up, clock already right).
import InstrumentPanel from "../src/app/instrument-panel";
import type { FlashArea } from "../src/outbox/flash-area";
import type { Clock, Instruments, Log, Network, Timers } from "../src/app/services";
import SimulatedInstruments from "../src/sim/simulated-instruments";

export interface BoardOptions {
  log: Log;
  timers: Timers;
  clock: Clock;
  config: Readonly<Record<string, unknown>>;
}

export default class Board {
  readonly name = "Linux simulator (simulated instruments)";
  readonly instruments: Instruments;
  readonly network: Network;
  readonly dnsServers: readonly string[];

  constructor(options: BoardOptions) {
    const sim = new SimulatedInstruments({ clock: options.clock });
    this.instruments = new InstrumentPanel({
      rtd: sim.rtd,
      loops: sim.loops,
      power: sim.power,
      flow: sim.flow,
      log: options.log,
    });
    this.network = { connect: (_wifi, done) => done(true) };
    const dns = options.config.dns;
    this.dnsServers = typeof dns === "string" && dns.length > 0 ? dns.split(",") : [];
  }

  /** Moddable's flash module does not exist for the Linux simulator: no outbox ring there. */
  openFlash(label: string): FlashArea {
    throw new Error(`no flash partition "${label}" on the Linux simulator`);
  }
}
