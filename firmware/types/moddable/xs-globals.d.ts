// $MODDABLE/xs/includes/xs.d.ts (trace) and $MODDABLE/typings/global.d.ts (device), reduced.
import type SMBus from "embedded:io/smbus";
import type SPI from "embedded:io/spi";
import type Serial from "embedded:io/serial";

declare global {
  interface Trace {
    (...args: (string | number | boolean | undefined | null)[]): void;
    left(msg: string, conversation?: string): void;
    center(msg: string, conversation?: string): void;
    right(msg: string, conversation?: string): void;
  }
  const trace: Trace;

  /** The host provider (embedded:provider/builtin): I/O classes and default bus pins of the target board. */
  var device: {
    io: { SMBus: typeof SMBus; SPI: typeof SPI; Serial: typeof Serial };
    I2C: { default: { data?: number; clock?: number; port?: number } };
    SPI: { default: { in?: number; out?: number; clock?: number; port?: number } };
    Serial: { default: { receive?: number; transmit?: number; port?: number } };
    pin: { [name: string]: number | string };
  };
}
export {};
