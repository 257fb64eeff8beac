import { describe, expect, it } from "vitest";
import INA228, { ina228Calibration } from "../../src/drivers/ina228";
import type { Ina228Options } from "../../src/drivers/ina228";
import { Ina228Model } from "../models/ina228-model";
import { smbusFor } from "../models/smbus-target";
import type { SMBusLog } from "../models/smbus-target";
import { INA228_EXAMPLE as EX } from "./datasheet-tables";

function setup(options: Partial<Omit<Ina228Options, "sensor">> = {}, prepare?: (model: Ina228Model) => void) {
  const model = new Ina228Model();
  prepare?.(model);
  const log: SMBusLog = { opened: [], closed: 0 };
  const errors: string[] = [];
  const sensor = new INA228({
    sensor: { data: 21, clock: 22, io: smbusFor(model, log) },
    shuntOhms: EX.shuntOhms,
    maxCurrentA: EX.maxCurrentA,
    onError: (message) => errors.push(message),
    ...options,
  });
  return { model, sensor, log, errors };
}

describe("INA228 calibration (datasheet 8.1.2)", () => {
  it("reproduces the application example: CURRENT_LSB = 10 A / 2^19, SHUNT_CAL = 4050", () => {
    const calibration = ina228Calibration(EX.shuntOhms, EX.maxCurrentA);
    expect(calibration.adcRange).toBe(0); // 162 mV does not fit ±40.96 mV
    expect(calibration.currentLsb).toBeCloseTo(EX.currentLsb, 12);
    expect(calibration.shuntCal).toBe(4050);
  });

  it("uses ADCRANGE = 1 and multiplies SHUNT_CAL by 4 when the shunt drop fits ±40.96 mV", () => {
    // 1000 A through a 40 µΩ shunt = 40 mV. 13107.2e6 × (1000 / 2^19) × 40e-6 × 4 = 4000.
    expect(ina228Calibration(40e-6, 1000)).toEqual({
      adcRange: 1,
      currentLsb: 1000 / 2 ** 19,
      shuntCal: 4000,
    });
  });

  it("refuses a shunt drop beyond ±163.84 mV and a SHUNT_CAL beyond 15 bits", () => {
    expect(() => ina228Calibration(0.02, 10)).toThrow(/163.84/);
    expect(() => ina228Calibration(0.01, 1e-9)).toThrow(RangeError);
  });
});

describe("INA228 readings", () => {
  it("reads the datasheet example: 97.2 mV → 6 A, 48 V, 25 °C", () => {
    const { model, sensor, log } = setup({}, (m) => {
      m.shuntVolts = EX.shuntVoltage;
      m.busPinVolts = EX.busVoltage;
      m.dieTemperatureC = EX.dieTemperature;
    });
    expect(log.opened[0]).toMatchObject({ address: 0x40, hz: 400_000 });
    // The model's registers hold the datasheet's returned values.
    expect(model.shuntCode).toBe(EX.shuntVoltageCode);
    expect(model.currentCode.code).toBe(EX.currentCode);
    const sample = sensor.sample();
    expect(sample.voltage.value).toBeCloseTo(EX.busVoltage, 9);
    expect(sample.current.value).toBeCloseTo(EX.currentCode * (EX.maxCurrentA / 2 ** 19), 9);
    expect(sample.current.value).toBeCloseTo(EX.current, 4);
    expect(sample.shuntVoltage).toBeCloseTo(EX.shuntVoltage, 9);
    expect(sample.dieTemperature).toBeCloseTo(EX.dieTemperature, 9);
  });

  it("programs CONFIG, ADC_CONFIG and SHUNT_CAL", () => {
    const { model } = setup();
    expect(model.register(0x00) & 0x0010).toBe(0);
    expect(model.register(0x01) >> 12).toBe(0xf); // continuous shunt, bus, temperature
    expect(model.register(0x02)).toBe(4050);
  });

  it("reads negative current (reverse flow) as negative amperes", () => {
    const { sensor } = setup({}, (m) => (m.shuntVolts = -EX.shuntVoltage));
    expect(sensor.sample().current.value).toBeCloseTo(-EX.current, 3);
  });

  it("scales the bus voltage by the divider ratio for a stack above 85 V", () => {
    // 0.4 kV stack, 40:1 divider → 10 V at VBUS.
    const { sensor } = setup({ dividerRatio: 40 }, (m) => (m.busPinVolts = 10));
    expect(sensor.sample().voltage.value).toBeCloseTo(400, 6);
  });

  it("measures a 1000 A stack through a 40 µΩ shunt with ADCRANGE = 1", () => {
    const { model, sensor } = setup(
      { shuntOhms: 40e-6, maxCurrentA: 1000 },
      (m) => (m.shuntVolts = 750 * 40e-6),
    );
    expect(model.register(0x00) & 0x0010).toBe(0x0010);
    expect(model.register(0x02)).toBe(4000);
    const current = sensor.sample().current.value ?? NaN;
    expect(Math.abs(current - 750)).toBeLessThan(1000 / 2 ** 19 + 1e-9);
  });
});

describe("INA228 faults become sensor faults", () => {
  it("refuses a chip that is not an INA228", () => {
    const { sensor, errors } = setup({}, (m) => (m.deviceId = 0x2381)); // INA238
    expect(errors.join()).toMatch(/unexpected device/);
    const sample = sensor.sample();
    expect(sample.voltage.fault?.reason).toBe("no_device");
    expect(sample.current.fault?.reason).toBe("no_device");
  });

  it("refuses another vendor's chip", () => {
    const { sensor } = setup({}, (m) => (m.manufacturerId = 0x1234));
    expect(sensor.sample().voltage.fault?.reason).toBe("no_device");
  });

  it("turns an I2C NACK into bus_error on both channels, and recovers", () => {
    const { model, sensor } = setup({}, (m) => (m.busPinVolts = 12));
    model.nack = true;
    const failed = sensor.sample();
    expect(failed).toMatchObject({
      voltage: { value: null, fault: { reason: "bus_error" } },
      current: { value: null, fault: { reason: "bus_error" } },
      shuntVoltage: null,
      dieTemperature: null,
    });
    model.nack = false;
    expect(sensor.sample().voltage.value).toBeCloseTo(12, 3);
  });

  it("notices a brown-out reset (SHUNT_CAL back to its default) and reprograms", () => {
    const { model, sensor } = setup({}, (m) => (m.shuntVolts = EX.shuntVoltage));
    model.reset();
    expect(sensor.sample().current.fault?.reason).toBe("no_device");
    expect(sensor.sample().current.value).toBeCloseTo(EX.current, 4);
    expect(model.register(0x02)).toBe(4050);
  });

  it("reports a shunt voltage beyond ±163.84 mV as over_range", () => {
    const { sensor } = setup({}, (m) => (m.shuntVolts = 0.2));
    expect(sensor.sample().current.fault?.reason).toBe("over_range");
  });

  it("reports a CURRENT arithmetic overflow (MATHOF) as over_range", () => {
    // Calibrated for 5 A, but 0.16 V across 16.2 mΩ is 9.9 A: 512000 × 4096 / 2025 overflows 20 bits.
    const { sensor } = setup({ maxCurrentA: 5 }, (m) => (m.shuntVolts = 0.16));
    const current = sensor.sample().current;
    expect(current.value).toBeNull();
    expect(current.fault?.detail).toMatch(/MATHOF/);
  });

  it("reports more than 85 V at the VBUS pin as over_range", () => {
    const { sensor } = setup({}, (m) => (m.busPinVolts = 90));
    expect(sensor.sample().voltage.fault?.reason).toBe("over_range");
  });

  it("reports a trim memory checksum error", () => {
    const { sensor } = setup({}, (m) => (m.memoryError = true));
    const sample = sensor.sample();
    expect(sample.voltage.fault?.reason).toBe("sensor_fault");
    expect(sample.current.fault?.reason).toBe("sensor_fault");
  });

  it("shuts the ADC down and releases the bus on close", () => {
    const { model, sensor, log } = setup();
    sensor.close();
    expect(model.register(0x01) >> 12).toBe(0);
    expect(log.closed).toBe(1);
    expect(sensor.sample().voltage.fault?.reason).toBe("no_device");
  });
});
