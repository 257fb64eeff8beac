import { describe, expect, it } from "vitest";
import ADS1115, { ads1115LsbVolts, ads1115RangeForShunt } from "../../src/drivers/ads1115";
import type { Ads1115LoopChannel, Ads1115Options } from "../../src/drivers/ads1115";
import { Ads1115Model } from "../models/ads1115-model";
import { FakeTimer } from "../models/fake-timer";
import { smbusFor } from "../models/smbus-target";
import type { SMBusLog } from "../models/smbus-target";

const PRESSURE: Ads1115LoopChannel = {
  name: "pressure",
  input: "AIN0",
  shuntOhms: 150,
  rangeLow: 0,
  rangeHigh: 40,
};
const PURITY: Ads1115LoopChannel = {
  name: "purity",
  input: "AIN1",
  shuntOhms: 150,
  rangeLow: 99,
  rangeHigh: 100,
};

function setup(options: Partial<Omit<Ads1115Options, "sensor" | "delay">> = {}, address?: number) {
  const clock = new FakeTimer();
  const model = new Ads1115Model(clock);
  const log: SMBusLog = { opened: [], closed: 0 };
  const errors: string[] = [];
  const sensor = new ADS1115({
    sensor: { data: 21, clock: 22, io: smbusFor(model, log), ...(address === undefined ? {} : { address }) },
    delay: clock.delay,
    channels: [PRESSURE, PURITY],
    onError: (message) => errors.push(message),
    ...options,
  });
  return { clock, model, sensor, log, errors };
}

describe("ADS1115 full-scale ranges (datasheet Table 3)", () => {
  it.each([
    [6.144, 187.5e-6],
    [4.096, 125e-6],
    [2.048, 62.5e-6],
    [1.024, 31.25e-6],
    [0.512, 15.625e-6],
    [0.256, 7.8125e-6],
  ] as const)("±%f V has an LSB of %f V", (fullScale, lsb) => {
    expect(ads1115LsbVolts(fullScale)).toBeCloseTo(lsb, 12);
  });

  it.each([
    [150, 4.096], // 24 mA → 3.6 V
    [100, 4.096], // 2.4 V: ±2.048 would clip at 20.48 mA, before the NE 43 limit is visible
    [50, 2.048],
    [250, 6.144],
  ] as const)("a %d Ω shunt gets ±%f V", (shunt, fullScale) => {
    expect(ads1115RangeForShunt(shunt)).toBe(fullScale);
  });

  it("refuses shunts and ranges that cannot show the NE 43 failure band", () => {
    expect(() => ads1115RangeForShunt(500)).toThrow(RangeError);
    expect(() => setup({ channels: [{ ...PRESSURE, shuntOhms: 100, fullScale: 2.048 }] })).toThrow(
      /clips below 20.5 mA/,
    );
  });
});

describe("ADS1115 single-shot loop conversions", () => {
  it("opens the bus at 0x48, writes the Config register and scales by calibration", () => {
    const { model, sensor, log, clock } = setup();
    model.setLoopCurrent(0, 12, 150);
    model.setLoopCurrent(1, 19.2, 150);
    const sample = sensor.sample();
    expect(log.opened[0]).toMatchObject({ address: 0x48, hz: 400_000, data: 21, clock: 22 });
    // OS | MUX 100 (AIN0/GND) | PGA 001 (±4.096 V) | MODE single | DR 100 (128 SPS) | comparator off
    expect(model.conversionsStarted).toEqual([0x4383, 0x5383]);
    expect(sample.pressure?.milliamps).toBeCloseTo(12, 2);
    expect(sample.pressure?.value).toBeCloseTo(20, 2);
    expect(sample.purity?.value).toBeCloseTo(99.95, 3);
    expect(sample.pressure?.fault).toBeNull();
    // Each conversion waited at least 1/128 s of (virtual) time.
    expect(clock.now).toBeGreaterThanOrEqual(2 * (1000 / 128));
  });

  it.each([
    [4, 0],
    [20, 40],
    [3.85, -0.375],
    [20.45, 41.125],
  ])("%f mA reads %f bar (NE 43 measuring band, extrapolated)", (milliamps, bar) => {
    const { model, sensor } = setup({ channels: [PRESSURE] });
    model.setLoopCurrent(0, milliamps, 150);
    const sample = sensor.sample();
    expect(sample.pressure?.fault).toBeNull();
    expect(sample.pressure?.value).toBeCloseTo(bar, 2);
  });

  it("uses the configured data rate", () => {
    const { model, sensor, clock } = setup({ channels: [PRESSURE], dataRate: 8 });
    model.setLoopCurrent(0, 10, 150);
    sensor.sample();
    expect((model.conversionsStarted[0] ?? 0) & 0x00e0).toBe(0);
    expect(clock.now).toBeGreaterThanOrEqual(125);
  });

  it("differential inputs select the matching MUX code", () => {
    const { model, sensor } = setup({ channels: [{ ...PRESSURE, input: "AIN2-AIN3" }] });
    model.inputs[2] = 2.4;
    model.inputs[3] = 0.6; // 1.8 V across a 150 Ω shunt = 12 mA
    expect(sensor.sample().pressure?.value).toBeCloseTo(20, 2);
    expect(((model.conversionsStarted[0] ?? 0) >> 12) & 0x7).toBe(0b011);
  });
});

describe("ADS1115 faults become sensor faults", () => {
  it.each([
    [3.7, "under_range"],
    [20.6, "over_range"],
    [22, "over_range"],
    [0, "open_circuit"],
    [-2, "open_circuit"],
  ] as const)("%f mA → %s, no value (NAMUR NE 43)", (milliamps, reason) => {
    const { model, sensor } = setup({ channels: [PRESSURE] });
    model.setLoopCurrent(0, milliamps, 150);
    const sample = sensor.sample();
    expect(sample.pressure?.value).toBeNull();
    expect(sample.pressure?.fault?.reason).toBe(reason);
  });

  it("reports a saturated ADC as over_range even when the scaled current would look plausible", () => {
    const { model, sensor } = setup({ channels: [{ ...PRESSURE, shuntOhms: 150 }] });
    model.setLoopCurrent(0, 30, 150); // 4.5 V > 4.096 V
    const sample = sensor.sample();
    expect(sample.pressure?.fault?.reason).toBe("over_range");
    expect(sample.pressure?.fault?.detail).toMatch(/full scale/);
  });

  it("reports a conversion that never finishes", () => {
    const { model, sensor } = setup({ channels: [PRESSURE] });
    model.stuck = true;
    model.setLoopCurrent(0, 12, 150);
    expect(sensor.sample().pressure).toMatchObject({
      value: null,
      milliamps: null,
      fault: { reason: "conversion_timeout" },
    });
  });

  it("turns an I2C NACK into bus_error on every channel, then recovers", () => {
    const { model, sensor } = setup();
    model.setLoopCurrent(0, 12, 150);
    model.setLoopCurrent(1, 12, 150);
    model.nack = true;
    const failed = sensor.sample();
    expect(failed.pressure?.fault?.reason).toBe("bus_error");
    expect(failed.purity?.fault?.reason).toBe("bus_error");
    expect(failed.pressure?.value).toBeNull();
    model.nack = false;
    expect(sensor.sample().pressure?.value).toBeCloseTo(20, 2);
  });

  it("reports no_device when nothing answers at the address", () => {
    const { sensor, errors } = setup({}, 0x49);
    expect(errors.join()).toMatch(/NACK/);
    const sample = sensor.sample();
    expect(sample.pressure?.fault?.reason).toBe("no_device");
    expect(sample.purity?.fault?.reason).toBe("no_device");
  });

  it("closes its bus", () => {
    const { sensor, log } = setup();
    sensor.close();
    expect(log.closed).toBe(1);
    expect(sensor.sample().pressure?.fault?.reason).toBe("no_device");
  });
});
