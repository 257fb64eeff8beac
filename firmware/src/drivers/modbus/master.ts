/*
	Modbus RTU master: one transaction at a time over an ECMA-419 Serial (RS-485 through an
	auto-direction transceiver). Frames come from ./rtu; this layer only moves bytes and keeps
	time: the response timeout, the 3.5-character silence before each request, and a recovery
	pause after a timeout so a late answer cannot be mistaken for the next one.
	Results are values, never exceptions: a failed transaction resolves with a typed ModbusError.
*/

import type { SerialConstructor, SerialIO, SerialOptions, TimerService } from "../io";
import { errorText } from "../measurement";
import { MAX_ADU_BYTES, buildReadRequest, expectedResponseLength, parseReadResponse } from "./rtu";
import type { ModbusReadResult, ReadRequest } from "./rtu";

export interface ModbusMasterOptions {
  serial: SerialOptions & { io: SerialConstructor };
  timer: TimerService;
  /** From the end of the request until the whole response is in. */
  timeoutMs?: number;
}

interface Pending {
  request: ReadRequest;
  received: Uint8Array;
  length: number;
  timer: unknown;
  resolve: (result: ModbusReadResult) => void;
}

export default class ModbusMaster {
  #io: SerialIO | undefined;
  #timer: TimerService;
  #timeoutMs: number;
  #silenceMs: number;
  #pending: Pending | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #recovering = false;

  constructor(options: ModbusMasterOptions) {
    this.#timer = options.timer;
    this.#timeoutMs = options.timeoutMs ?? 250;
    const baud = options.serial.baud ?? 9600;
    // t3.5 = 3.5 characters of 11 bits; fixed 1.75 ms above 19200 baud (serial line spec 2.5.1.1).
    this.#silenceMs = baud > 19200 ? 2 : Math.ceil((3.5 * 11 * 1000) / baud);
    this.#io = new options.serial.io({
      baud: 9600,
      ...options.serial,
      format: "buffer",
      onReadable: () => this.#receive(),
    });
  }

  readRegisters(request: ReadRequest): Promise<ModbusReadResult> {
    const frame = buildReadRequest(request); // throws RangeError on a malformed request, before queueing
    const run = this.#queue.then(() => this.#transact(request, frame));
    this.#queue = run;
    return run;
  }

  close(): void {
    this.#finish({ ok: false, error: { kind: "bus_error", message: "closed" } });
    this.#io?.close();
    this.#io = undefined;
  }

  async #transact(request: ReadRequest, frame: Uint8Array): Promise<ModbusReadResult> {
    await this.#sleep(this.#recovering ? this.#timeoutMs : this.#silenceMs);
    this.#recovering = false;
    const io = this.#io;
    if (!io) return { ok: false, error: { kind: "bus_error", message: "closed" } };
    try {
      this.#drain(io);
      io.write(frame);
    } catch (error) {
      return { ok: false, error: { kind: "bus_error", message: `serial: ${errorText(error)}` } };
    }
    return new Promise<ModbusReadResult>((resolve) => {
      const timer = this.#timer.set(() => {
        this.#recovering = true;
        this.#finish({
          ok: false,
          error: {
            kind: "timeout",
            message: `no complete answer from unit ${request.unit} within ${this.#timeoutMs} ms`,
          },
        });
      }, this.#timeoutMs);
      this.#pending = { request, received: new Uint8Array(MAX_ADU_BYTES), length: 0, timer, resolve };
    });
  }

  #receive(): void {
    const io = this.#io;
    if (!io) return;
    let chunk: ArrayBuffer | number | undefined;
    try {
      chunk = io.read();
    } catch (error) {
      this.#finish({ ok: false, error: { kind: "bus_error", message: `serial: ${errorText(error)}` } });
      return;
    }
    const pending = this.#pending;
    if (!pending || chunk === undefined) return; // nobody asked: line noise or a late answer
    const bytes = typeof chunk === "number" ? Uint8Array.of(chunk) : new Uint8Array(chunk);
    if (pending.length + bytes.length > MAX_ADU_BYTES) {
      this.#finish({
        ok: false,
        error: { kind: "bad_response", message: `more than ${MAX_ADU_BYTES} bytes` },
      });
      return;
    }
    pending.received.set(bytes, pending.length);
    pending.length += bytes.length;
    const expected = expectedResponseLength(pending.received, pending.length);
    if (expected !== undefined && pending.length >= expected)
      this.#finish(parseReadResponse(pending.received.slice(0, expected), pending.request));
  }

  #finish(result: ModbusReadResult): void {
    const pending = this.#pending;
    if (!pending) return;
    this.#pending = undefined;
    this.#timer.clear(pending.timer);
    pending.resolve(result);
  }

  #drain(io: SerialIO): void {
    for (let i = 0; i < 64; i++) {
      const stale = io.read();
      if (stale === undefined || (typeof stale !== "number" && stale.byteLength === 0)) return;
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#timer.set(() => resolve(), ms));
  }
}
