import { describe, expect, it } from "vitest";
import MassFlowMeter from "../../src/drivers/mass-flow-meter";
import type { MassFlowMeterOptions } from "../../src/drivers/mass-flow-meter";
import { FakeTimer, drive } from "../models/fake-timer";
import { ModbusFlowMeterModel } from "../models/modbus-flow-meter-model";

// A meter reporting H2 flow in NL/min as float32 in input registers 0–1 (big-endian) and the
// totaliser in holding registers 100–101 (word-swapped), as vendor maps commonly do.
function setup(options: Partial<Omit<MassFlowMeterOptions, "sensor" | "timer">> = {}) {
  const timer = new FakeTimer();
  const model = new ModbusFlowMeterModel(timer, 7);
  model.setFloat("input", 0, 1.25);
  model.setFloat("holding", 100, 123456.5, "CDAB");
  const meter = new MassFlowMeter({
    sensor: { transmit: 17, receive: 16, port: 2, io: model.serial() },
    timer,
    unit: 7,
    points: {
      flow: { function: 4, address: 0, scale: 1000 }, // NL/min → sccm
      total: { function: 3, address: 100, wordOrder: "CDAB" },
    },
    ...options,
  });
  const sample = () => drive(timer, meter.sample());
  return { timer, model, meter, sample };
}

describe("Modbus mass-flow meter readings", () => {
  it("reads float32 input and holding registers in their word orders, scaled", async () => {
    const { model, sample } = setup();
    const result = await sample();
    expect(result).toEqual({ flow: { value: 1250, fault: null }, total: { value: 123456.5, fault: null } });
    expect(model.baud).toBe(9600);
    expect([...(model.requests[0] ?? [])]).toEqual([0x07, 0x04, 0x00, 0x00, 0x00, 0x02, 0x71, 0xad]);
    expect([...(model.requests[1] ?? [])].slice(0, 6)).toEqual([0x07, 0x03, 0x00, 0x64, 0x00, 0x02]);
  });

  it("reassembles an answer that arrives in pieces", async () => {
    const { model, sample } = setup();
    model.chunkBytes = 2;
    expect((await sample()).flow).toEqual({ value: 1250, fault: null });
  });

  it("ignores line noise that arrived before the request", async () => {
    const { model, sample } = setup();
    model.inject([0x00, 0xff, 0x07]);
    expect((await sample()).flow?.value).toBe(1250);
  });

  it("reports a NaN from the meter as invalid_value, never as a number", async () => {
    const { model, sample } = setup();
    model.setFloat("input", 0, NaN);
    expect((await sample()).flow).toMatchObject({ value: null, fault: { reason: "invalid_value" } });
  });
});

describe("Modbus faults become sensor faults", () => {
  it("reports an exception response with its code, without retrying", async () => {
    const { model, sample } = setup({ points: { flow: { function: 4, address: 40 } } });
    const result = await sample();
    expect(result.flow).toEqual({
      value: null,
      fault: { reason: "exception", detail: "exception 2 (illegal data address)" },
    });
    expect(model.requests).toHaveLength(1);
  });

  it("reports an injected server failure exception", async () => {
    const { model, sample } = setup();
    model.faults.push({ kind: "exception", code: 4 });
    expect((await sample()).flow?.fault).toEqual({
      reason: "exception",
      detail: "exception 4 (server device failure)",
    });
  });

  it("retries a CRC error once, then reports crc_error", async () => {
    const { model, sample } = setup({ retries: 1 });
    model.faults.push({ kind: "corrupt_crc" }, { kind: "corrupt_crc" });
    const result = await sample();
    expect(result.flow).toMatchObject({ value: null, fault: { reason: "crc_error" } });
    expect(result.total?.value).toBe(123456.5);
    expect(model.requests).toHaveLength(3);
  });

  it("recovers from a single CRC error by retrying", async () => {
    const { model, sample } = setup({ retries: 1 });
    model.faults.push({ kind: "corrupt_crc" });
    expect((await sample()).flow?.value).toBe(1250);
  });

  it("reports timeout when the meter stays silent, after the configured time", async () => {
    const { model, timer, sample } = setup({
      retries: 0,
      timeoutMs: 300,
      points: { flow: { function: 4, address: 0 } },
    });
    model.faults.push({ kind: "silent" });
    const result = await sample();
    expect(result.flow).toMatchObject({ value: null, fault: { reason: "timeout" } });
    expect(timer.now).toBeGreaterThanOrEqual(300);
    expect(timer.pending).toBe(0);
  });

  it("does not take a late answer for the next request's", async () => {
    const { model, sample } = setup({
      retries: 0,
      timeoutMs: 250,
      points: { flow: { function: 4, address: 0 } },
    });
    // The 1.25 answer arrives 270 ms after the request: after the timeout, and before the meter
    // would answer a request sent straight after it.
    model.faults.push({ kind: "late", ms: 250 });
    expect((await sample()).flow?.fault?.reason).toBe("timeout");
    model.setFloat("input", 0, 2.5);
    expect((await sample()).flow).toEqual({ value: 2.5, fault: null });
  });

  it("reports an answer from another unit as bad_response", async () => {
    const { model, sample } = setup({ retries: 0 });
    model.faults.push({ kind: "wrong_unit" });
    expect((await sample()).flow?.fault?.reason).toBe("bad_response");
  });

  it("reports bus_error after close instead of throwing", async () => {
    const { meter, sample } = setup();
    meter.close();
    expect((await sample()).flow).toMatchObject({ value: null, fault: { reason: "bus_error" } });
  });

  it("rejects a configuration it could never send", () => {
    expect(() => setup({ unit: 0 })).toThrow(RangeError);
    expect(() => setup({ points: { flow: { function: 4, address: 0xffff } } })).toThrow(RangeError);
    expect(() => setup({ retries: -1 })).toThrow(RangeError);
  });
});
