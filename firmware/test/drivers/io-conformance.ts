// eslint-disable-next-line @typescript-eslint/triple-slash-reference -- ambient "declare module" files cannot be imported; tsconfig does not include firmware/types yet
/// <reference path="../../types/embedded-io.d.ts" />
/*
	Compile-time check (npm run typecheck), no runtime part: the ECMA-419 IO classes, as declared
	in firmware/types/embedded-io.d.ts, must be acceptable as a driver's options.sensor.io —
	so the drivers' structural IO types cannot drift from the API they run on under XS.
*/

import type SMBus from "embedded:io/smbus";
import type SPI from "embedded:io/spi";
import type Serial from "embedded:io/serial";
import type { SMBusConstructor, SPIConstructor, SerialConstructor } from "../../src/drivers/io";

export type Conforms = [
  typeof SMBus extends SMBusConstructor ? true : never,
  typeof SPI extends SPIConstructor ? true : never,
  typeof Serial extends SerialConstructor ? true : never,
];
export const conforms: Conforms = [true, true, true];
