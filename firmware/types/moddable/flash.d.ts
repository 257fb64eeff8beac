// typings/flash.d.ts of the SDK (modules/files/flash), reduced to what firmware/board/esp32.ts uses.
declare module "flash" {
  class Flash {
    constructor(partition?: string);
    erase(sector: number): void;
    read(offset: number, byteLength: number): ArrayBuffer;
    write(offset: number, byteLength: number, buffer: ArrayBuffer): void;
    readonly byteLength: number;
    readonly blockSize: number;
  }
  export { Flash as default };
}
