/*
	Minimal declarations of the ECMA-419 IO classes the sensor drivers run on, as Moddable
	implements them (modules/io/{i2c,smbus,spi,serial}). Written from ECMA-419 2nd edition and
	Moddable's runtime sources; only what this project uses. Moddable's own typings/embedded_io
	declare the same modules: when a build includes those, leave this file out.
	Every method throws when the bus transaction fails (for I2C: the target did not acknowledge).
*/

declare module "embedded:io/smbus" {
  type IOBuffer = ArrayBuffer | ArrayBufferView;

  export interface SMBusConstructorOptions {
    data?: number;
    clock?: number;
    hz: number;
    address: number;
    port?: number;
    stop?: boolean;
    format?: "buffer";
    target?: unknown;
  }

  export default class SMBus {
    constructor(options: SMBusConstructorOptions);
    readonly resolution: number;
    format: "buffer";
    close(): void;
    read(byteLength: number, stop?: boolean): ArrayBuffer;
    write(buffer: IOBuffer, stop?: boolean): void;
    readUint8(register: number): number;
    writeUint8(register: number, value: number): void;
    readUint16(register: number, bigEndian?: boolean): number;
    writeUint16(register: number, value: number, bigEndian?: boolean): void;
    readBuffer(register: number, byteLength: number): ArrayBuffer;
    writeBuffer(register: number, buffer: IOBuffer): void;
    readQuick(): void;
    writeQuick(): void;
    receiveByte(): number;
    sendByte(command: number): void;
  }
}

declare module "embedded:io/spi" {
  type IOBuffer = ArrayBuffer | ArrayBufferView;

  export interface SPIConstructorOptions {
    out?: number;
    in?: number;
    /** Required at run time; optional here because board defaults (device.SPI.default) supply it. */
    clock?: number;
    select?: number;
    active?: 0 | 1;
    hz: number;
    mode?: number;
    port?: number;
    format?: "buffer";
    target?: unknown;
  }

  export default class SPI {
    constructor(options: SPIConstructorOptions);
    format: "buffer";
    close(): void;
    read(byteLength: number): ArrayBuffer;
    write(buffer: IOBuffer): void;
    /** Full duplex, in place: the bytes clocked in replace the bytes sent. */
    transfer(buffer: ArrayBufferView): void;
    /** Waits for queued transfers; with deselect true, releases chip select. */
    flush(deselect?: boolean): void;
  }
}

declare module "embedded:io/serial" {
  type IOBuffer = ArrayBuffer | ArrayBufferView;

  export interface SerialConstructorOptions {
    receive?: number;
    transmit?: number;
    baud: number;
    port?: number;
    flowControl?: "hardware" | "none";
    dataTerminalReady?: number;
    requestToSend?: number;
    clearToSend?: number;
    dataSetReady?: number;
    format?: "number" | "buffer";
    onReadable?: (this: Serial, count: number) => void;
    onWritable?: (this: Serial, count: number) => void;
    onError?: (this: Serial) => void;
    target?: unknown;
  }

  export default class Serial {
    constructor(options: SerialConstructorOptions);
    format: "number" | "buffer";
    close(): void;
    /** "buffer" format: every byte waiting, or undefined when none. "number" format: one byte. */
    read(): ArrayBuffer | number | undefined;
    read(byteLength: number): ArrayBuffer | undefined;
    write(data: number | IOBuffer): void;
    flush(): void;
    set(options: { dataTerminalReady?: boolean; requestToSend?: boolean; break?: boolean }): void;
  }
}
