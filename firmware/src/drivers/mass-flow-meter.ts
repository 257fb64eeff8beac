/*
	Hydrogen thermal mass-flow meter with a Modbus RTU (RS-485) interface
	Modbus Application Protocol Specification V1.1b3, functions 03 / 04;
	Modbus over Serial Line V1.02. Register addresses, float word order and units come from the
	meter's own Modbus register map (vendor manual) and are passed in as points.

	Each point is one IEEE 754 float32 spread over two registers. sample() reads every point
	and reports, per point, either the scaled value or why there is none (timeout, CRC error,
	exception response, malformed answer, non-finite number). Timeouts and CRC errors are
	retried; exception responses are not (the meter has answered).
*/

import type { SerialConstructor, SerialOptions, TimerService } from "./io";
import { faulted, measured } from "./measurement";
import type { FaultReason, Measured } from "./measurement";
import ModbusMaster from "./modbus/master";
import { decodeFloat32, validateReadRequest } from "./modbus/rtu";
import type { ModbusErrorKind, ReadFunction, ReadRequest, WordOrder } from "./modbus/rtu";

export interface FlowMeterPoint {
  /** 0x03 holding registers or 0x04 input registers. */
  function: ReadFunction;
  /** Protocol address of the first of the two registers (0-based, as sent on the wire). */
  address: number;
  wordOrder?: WordOrder;
  /** Multiplies the meter's value, e.g. 1000 for NL/min → sccm. */
  scale?: number;
}

export interface MassFlowMeterOptions {
  sensor: SerialOptions & { io: SerialConstructor };
  /** Moddable's Timer (set/clear) for the response timeout. */
  timer: TimerService;
  /** Modbus unit (slave) address, 1…247. */
  unit: number;
  points: Readonly<Record<string, FlowMeterPoint>>;
  /** Word order for points that do not name one. */
  wordOrder?: WordOrder;
  timeoutMs?: number;
  /** Further attempts after a timeout or CRC error. */
  retries?: number;
}

export type MassFlowMeterConfiguration = Partial<
  Pick<MassFlowMeterOptions, "points" | "wordOrder" | "retries" | "unit">
>;

export type MassFlowMeterSample = Record<string, Measured>;

const FaultFor: Readonly<Record<ModbusErrorKind, FaultReason>> = Object.freeze({
  timeout: "timeout",
  crc_error: "crc_error",
  exception: "exception",
  bad_response: "bad_response",
  bus_error: "bus_error",
});

const WORD_ORDERS: readonly WordOrder[] = ["ABCD", "CDAB", "BADC", "DCBA"];

export default class MassFlowMeter {
  #master: ModbusMaster | undefined;
  #unit = 1;
  #points: Readonly<Record<string, FlowMeterPoint>> = {};
  #wordOrder: WordOrder = "ABCD";
  #retries = 1;

  constructor(options: MassFlowMeterOptions) {
    this.configure(options);
    this.#master = new ModbusMaster({
      serial: { baud: 9600, ...options.sensor },
      timer: options.timer,
      timeoutMs: options.timeoutMs,
    });
  }

  configure(options: MassFlowMeterConfiguration): void {
    const unit = options.unit ?? this.#unit;
    const wordOrder = options.wordOrder ?? this.#wordOrder;
    const points = options.points ?? this.#points;
    if (!WORD_ORDERS.includes(wordOrder)) throw new RangeError(`unknown word order ${wordOrder}`);
    for (const [name, point] of Object.entries(points)) {
      validateReadRequest(requestFor(unit, point));
      if (point.wordOrder !== undefined && !WORD_ORDERS.includes(point.wordOrder))
        throw new RangeError(`${name}: unknown word order ${point.wordOrder}`);
      if (point.scale !== undefined && !Number.isFinite(point.scale))
        throw new RangeError(`${name}: scale must be finite`);
    }
    if (options.retries !== undefined) {
      if (!Number.isInteger(options.retries) || options.retries < 0)
        throw new RangeError("retries must be a whole number ≥ 0");
      this.#retries = options.retries;
    }
    this.#unit = unit;
    this.#wordOrder = wordOrder;
    this.#points = { ...points };
  }

  async sample(): Promise<MassFlowMeterSample> {
    const result: MassFlowMeterSample = {};
    for (const [name, point] of Object.entries(this.#points)) result[name] = await this.#readPoint(point);
    return result;
  }

  close(): void {
    this.#master?.close();
    this.#master = undefined;
  }

  async #readPoint(point: FlowMeterPoint): Promise<Measured> {
    const request = requestFor(this.#unit, point);
    let detail = "";
    let reason: FaultReason = "bus_error";
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      const master = this.#master;
      if (!master) return faulted("bus_error", "closed");
      const answer = await master.readRegisters(request);
      if (answer.ok) {
        const value = decodeFloat32(answer.registers, 0, point.wordOrder ?? this.#wordOrder);
        return measured(value * (point.scale ?? 1));
      }
      reason = FaultFor[answer.error.kind];
      detail = answer.error.message;
      if (answer.error.kind !== "timeout" && answer.error.kind !== "crc_error") break;
    }
    return faulted(reason, detail);
  }
}

function requestFor(unit: number, point: FlowMeterPoint): ReadRequest {
  return { unit, function: point.function, address: point.address, quantity: 2 };
}
