/*
	The slice of the ECMA-419 IO classes (embedded:io/smbus, embedded:io/spi, embedded:io/serial)
	that these drivers call. Drivers depend on these structural types instead of importing the
	embedded:io modules, so the same driver runs on XS with Moddable's classes and under Node
	with the register-level device models in firmware/test/models.
	firmware/test/drivers/io-conformance.test.ts checks that firmware/types/embedded-io.d.ts
	(the ECMA-419 declarations) satisfies them.
*/

export type BufferSource = ArrayBuffer | ArrayBufferView;

/** embedded:io/smbus: register-oriented I2C. Every call throws when the target does not acknowledge. */
export interface SMBusIO {
  readUint8(register: number): number;
  writeUint8(register: number, value: number): void;
  readUint16(register: number, bigEndian?: boolean): number;
  writeUint16(register: number, value: number, bigEndian?: boolean): void;
  readBuffer(register: number, byteLength: number): ArrayBuffer;
  writeBuffer(register: number, buffer: BufferSource): void;
  close(): void;
}

export interface SMBusOptions {
  data?: number;
  clock?: number;
  port?: number;
  hz?: number;
  address?: number;
}

export type SMBusConstructor = new (options: SMBusOptions & { hz: number; address: number }) => SMBusIO;

/** embedded:io/spi: chip select asserts on the first transfer and releases on flush(true). */
export interface SPIIO {
  transfer(buffer: ArrayBufferView): void;
  write(buffer: BufferSource): void;
  flush(deselect?: boolean): void;
  close(): void;
}

export interface SPIOptions {
  in?: number;
  out?: number;
  /** SCLK pin; required at run time, usually from device.SPI.default. */
  clock?: number;
  select?: number;
  active?: 0 | 1;
  hz?: number;
  mode?: number;
  port?: number;
}

export type SPIConstructor = new (options: SPIOptions & { hz: number; mode: number }) => SPIIO;

/** embedded:io/serial in "buffer" format: non-blocking, onReadable reports bytes waiting. */
export interface SerialIO {
  read(): ArrayBuffer | number | undefined;
  write(buffer: BufferSource): void;
  close(): void;
}

export interface SerialOptions {
  transmit?: number;
  receive?: number;
  port?: number;
  baud?: number;
}

export type SerialConstructor = new (
  options: SerialOptions & { baud: number; format: "buffer"; onReadable: (count: number) => void },
) => SerialIO;

/** Moddable's Timer.delay: blocks the caller for ms milliseconds. */
export type DelayFunction = (ms: number) => void;

/** The subset of Moddable's Timer used for timeouts (Timer.set / Timer.clear fit this shape). */
export interface TimerService {
  set(callback: () => void, ms: number): unknown;
  clear(id: unknown): void;
}
