import { describe, expect, it } from "vitest";
import InstrumentPanel from "../../src/app/instrument-panel";
import type {
  FlowInstrument,
  LoopInstrument,
  PowerInstrument,
  RtdInstrument,
} from "../../src/app/instrument-panel";
import { faulted, measured } from "../../src/drivers/measurement";
import { CapturingLog } from "./harness";

const rtd = (t = 65.5): RtdInstrument => ({ sample: () => ({ temperature: measured(t) }) });
const loops = (): LoopInstrument => ({
  sample: () => ({ pressure_bar: measured(30.1), purity_pct: measured(99.99) }),
});
const power = (): PowerInstrument => ({
  sample: () => ({ voltage: measured(38.2), current: measured(150) }),
});
const flow = (): FlowInstrument => ({ sample: () => Promise.resolve({ h2_flow_sccm: measured(20_900) }) });

describe("InstrumentPanel", () => {
  it("maps the four drivers' samples onto the six channels", async () => {
    const panel = new InstrumentPanel({
      rtd: rtd(),
      loops: loops(),
      power: power(),
      flow: flow(),
      log: new CapturingLog(),
    });
    expect(await panel.sample()).toEqual({
      values: {
        temperature_c: 65.5,
        pressure_bar: 30.1,
        h2_flow_sccm: 20_900,
        purity_pct: 99.99,
        voltage_v: 38.2,
        current_a: 150,
      },
      faults: [],
    });
  });

  it("turns driver faults, throws and rejections into fault flags without values, and logs each once", async () => {
    const log = new CapturingLog();
    const panel = new InstrumentPanel({
      rtd: { sample: () => ({ temperature: faulted("open_circuit", "RTD open") }) },
      loops: {
        sample: () => ({ pressure_bar: faulted("under_range", "2.1 mA < 3.8 mA (NAMUR NE 43 failure)") }),
      },
      power: {
        sample: () => {
          throw new Error("I2C NACK at 0x40");
        },
      },
      flow: { sample: () => Promise.reject(new Error("serial port gone")) },
      log,
    });
    const s = await panel.sample();
    expect(s.faults).toEqual([
      "temperature_c",
      "pressure_bar",
      "h2_flow_sccm",
      "purity_pct",
      "voltage_v",
      "current_a",
    ]);
    expect(Object.values(s.values).every((v) => v === null)).toBe(true);
    expect(log.text()).toContain("temperature_c: open_circuit: RTD open");
    expect(log.text()).toContain("purity_pct: bad_response: driver returned no purity_pct");
    expect(log.text()).toContain("voltage_v: bus_error: I2C NACK at 0x40");
    expect(log.text()).toContain("h2_flow_sccm: bus_error: serial port gone");
    const lines = log.lines.length;
    await panel.sample();
    expect(log.lines.length).toBe(lines);
  });

  it("answers synchronously when the flow meter does", () => {
    const panel = new InstrumentPanel({
      rtd: rtd(),
      loops: loops(),
      power: power(),
      flow: { sample: () => ({ h2_flow_sccm: measured(1) }) },
      log: new CapturingLog(),
    });
    const s = panel.sample();
    expect(s).not.toBeInstanceOf(Promise);
  });
});
