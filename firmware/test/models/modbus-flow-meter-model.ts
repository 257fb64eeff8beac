/*
	A Modbus RTU server (slave) on an RS-485 line, behind an ECMA-419 Serial object, standing
	in for an H2 thermal mass-flow meter. It implements the server side of the Modbus
	Application Protocol V1.1b3 for functions 03 and 04 from the specification, independently
	of the driver's frame code: requests with a bad CRC or for another unit are ignored (no
	answer, as the serial line spec requires), unmapped addresses answer exception 02, a bad
	quantity exception 03, other functions exception 01. Answers arrive after a latency on
	the shared FakeTimer, optionally split into chunks. Faults can be injected per request.
*/

import type { BufferSource, SerialConstructor, SerialIO, SerialOptions } from "../../src/drivers/io";
import type { FakeTimer } from "./fake-timer";

export type Fault =
  | { kind: "silent" }
  | { kind: "corrupt_crc" }
  | { kind: "exception"; code: number }
  | { kind: "wrong_unit" }
  | { kind: "late"; ms: number };

export type FloatOrder = "ABCD" | "CDAB" | "BADC" | "DCBA";

/** CRC-16/MODBUS, bit by bit from the serial line spec's description. */
export function modbusCrc(bytes: ArrayLike<number>): number {
  let crc = 0xffff;
  for (let i = 0; i < bytes.length; i++) {
    crc ^= bytes[i] ?? 0;
    for (let n = 0; n < 8; n++) {
      const lsb = crc & 1;
      crc >>>= 1;
      if (lsb) crc ^= 0xa001;
    }
  }
  return crc;
}

export class ModbusFlowMeterModel {
  readonly unit: number;
  readonly holding = new Map<number, number>();
  readonly input = new Map<number, number>();
  latencyMs = 20;
  /** Deliver each answer in pieces of this many bytes (one onReadable each). */
  chunkBytes = Infinity;
  /** Faults for the next requests, consumed one per request. */
  readonly faults: Fault[] = [];
  readonly requests: Uint8Array[] = [];
  #rx: number[] = [];
  #timer: FakeTimer;
  #onReadable: ((count: number) => void) | undefined;
  #request: number[] = [];
  #baud = 0;

  constructor(timer: FakeTimer, unit = 1) {
    this.#timer = timer;
    this.unit = unit;
  }

  get baud(): number {
    return this.#baud;
  }

  setFloat(table: "holding" | "input", address: number, value: number, order: FloatOrder = "ABCD"): void {
    const view = new DataView(new ArrayBuffer(4));
    view.setFloat32(0, value, false);
    const abcd = [0, 1, 2, 3].map((i) => view.getUint8(i));
    const index = { A: 0, B: 1, C: 2, D: 3 } as const;
    const wire = [...order].map((letter) => abcd[index[letter as keyof typeof index]] ?? 0);
    const map = table === "holding" ? this.holding : this.input;
    map.set(address, ((wire[0] ?? 0) << 8) | (wire[1] ?? 0));
    map.set(address + 1, ((wire[2] ?? 0) << 8) | (wire[3] ?? 0));
  }

  /** Bytes arriving at the master that nobody asked for (noise, another master's traffic). */
  inject(bytes: number[]): void {
    this.#deliver(bytes);
  }

  /** The master's UART: what it writes reaches this server, what the server sends waits in rx. */
  serial(): SerialConstructor {
    const attach = (onReadable: (count: number) => void, baud: number) => {
      this.#onReadable = onReadable;
      this.#baud = baud;
    };
    const detach = () => (this.#onReadable = undefined);
    const take = (): number[] => this.#rx.splice(0);
    const send = (bytes: number[]) => this.#receive(bytes);
    return class ModelSerial implements SerialIO {
      #open = true;

      constructor(
        options: SerialOptions & { baud: number; format: "buffer"; onReadable: (count: number) => void },
      ) {
        if (options.format !== "buffer") throw new Error("model serial supports buffer format only");
        attach(options.onReadable, options.baud);
      }

      read(): ArrayBuffer | undefined {
        if (!this.#open) throw new Error("closed");
        const bytes = take();
        return bytes.length === 0 ? undefined : Uint8Array.from(bytes).buffer;
      }

      write(buffer: BufferSource): void {
        if (!this.#open) throw new Error("closed");
        const bytes = ArrayBuffer.isView(buffer)
          ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
          : new Uint8Array(buffer);
        send([...bytes]);
      }

      close(): void {
        this.#open = false;
        detach();
      }
    };
  }

  #receive(bytes: number[]): void {
    this.#request.push(...bytes);
    // Every request this server understands is 8 bytes (unit, function, 2× u16, CRC).
    while (this.#request.length >= 8) {
      const frame = this.#request.splice(0, 8);
      this.requests.push(Uint8Array.from(frame));
      this.#handle(frame);
    }
  }

  #handle(frame: number[]): void {
    const fault = this.faults.shift();
    const crc = modbusCrc(frame.slice(0, 6));
    if ((frame[6] ?? 0) !== (crc & 0xff) || (frame[7] ?? 0) !== crc >> 8) return;
    if (frame[0] !== this.unit) return;
    if (fault?.kind === "silent") return;

    const fn = frame[1] ?? 0;
    const address = ((frame[2] ?? 0) << 8) | (frame[3] ?? 0);
    const quantity = ((frame[4] ?? 0) << 8) | (frame[5] ?? 0);
    let pdu: number[];
    if (fault?.kind === "exception") pdu = [fn | 0x80, fault.code];
    else if (fn !== 3 && fn !== 4) pdu = [fn | 0x80, 0x01];
    else if (quantity < 1 || quantity > 125) pdu = [fn | 0x80, 0x03];
    else {
      const table = fn === 3 ? this.holding : this.input;
      const words: number[] = [];
      for (let i = 0; i < quantity; i++) {
        const word = table.get(address + i);
        if (word === undefined) break;
        words.push(word);
      }
      pdu =
        words.length === quantity
          ? [fn, quantity * 2, ...words.flatMap((w) => [w >> 8, w & 0xff])]
          : [fn | 0x80, 0x02];
    }
    const adu = [fault?.kind === "wrong_unit" ? (this.unit % 247) + 1 : this.unit, ...pdu];
    const answerCrc = modbusCrc(adu);
    adu.push(answerCrc & 0xff, answerCrc >> 8);
    if (fault?.kind === "corrupt_crc") adu[adu.length - 1] = (adu[adu.length - 1] ?? 0) ^ 0x5a;

    const latency = this.latencyMs + (fault?.kind === "late" ? fault.ms : 0);
    const chunk = Math.max(1, Math.min(this.chunkBytes, adu.length));
    for (let offset = 0, n = 0; offset < adu.length; offset += chunk, n++)
      this.#timer.set(() => this.#deliver(adu.slice(offset, offset + chunk)), latency + n);
  }

  #deliver(bytes: number[]): void {
    this.#rx.push(...bytes);
    this.#onReadable?.(this.#rx.length);
  }
}
