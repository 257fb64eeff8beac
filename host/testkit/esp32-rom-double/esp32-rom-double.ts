/**
 * A test double of an ESP32 in download mode: the mask-ROM serial loader and, once uploaded, the flasher
 * stub, speaking the real protocol byte for byte (SLIP frames, request/response headers, the ROM's 4-byte
 * and the stub's 2-byte status, checksums, the stub's "OHAI"). Flash is a RAM buffer; compressed writes
 * are inflated with real zlib; the SPI flash JEDEC id is produced by emulating the SPI0 user-command
 * registers that esptool-js drives. Faults reproduce what goes wrong with real boards.
 *
 * Protocol per esptool's serial-protocol documentation and esptool-js 0.7 (lib/esploader.js,
 * lib/targets/esp32.js): what it reads and writes is what this double answers.
 */
import { createHash } from "node:crypto";
import { constants as zc, inflateSync } from "node:zlib";
import { createRequire } from "node:module";
import { SlipDecoder, slipEncode } from "./slip";

const Op = {
  FLASH_BEGIN: 0x02,
  FLASH_DATA: 0x03,
  FLASH_END: 0x04,
  MEM_BEGIN: 0x05,
  MEM_END: 0x06,
  MEM_DATA: 0x07,
  SYNC: 0x08,
  WRITE_REG: 0x09,
  READ_REG: 0x0a,
  SPI_SET_PARAMS: 0x0b,
  SPI_ATTACH: 0x0d,
  CHANGE_BAUDRATE: 0x0f,
  FLASH_DEFL_BEGIN: 0x10,
  FLASH_DEFL_DATA: 0x11,
  FLASH_DEFL_END: 0x12,
  SPI_FLASH_MD5: 0x13,
  ERASE_REGION: 0xd1,
  READ_FLASH: 0xd2,
} as const;

/** ROM error codes (esptool's serial protocol docs) and the stub's own (stub_flasher.h). */
const RomError = { invalidMessage: 0x05, failedToAct: 0x06, invalidCrc: 0x07 } as const;
const StubError = {
  badDataLen: 0xc0,
  badChecksum: 0xc1,
  invalidCommand: 0xc3,
  notInFlashMode: 0xc6,
  inflate: 0xc7,
  notEnoughData: 0xc8,
  tooMuchData: 0xc9,
} as const;

const CHIP_MAGIC_REG = 0x40001000;
const CHIP_MAGIC_ESP32 = 0x00f01d83;
const EFUSE_BASE = 0x3ff5a000;
const UART_CLKDIV_REG = 0x3ff40014;
const APB_CTL_DATE_REG = 0x3ff6607c;
const SPI0 = 0x3ff42000;
const SPI_CMD_USR = 1 << 18;
const SYNC_REPLY_VALUE = 0x20120707;
const SECTOR = 4096;

export interface DoubleFaults {
  /** Never answer SYNC: a board not connected, or held in reset. */
  noSync?: boolean;
  /**
   * Boot text on the line before sync. "download": the ROM's banner of a board that did enter download
   * mode (the loader must skip it and sync). "spi-boot": a board that booted its app instead; it prints the
   * banner on every attempt and never syncs.
   */
  bootText?: "download" | "spi-boot";
  /** Received data blocks fail their checksum: every time, or only the first (a retry then succeeds). */
  badChecksum?: "always" | "once";
  /** SPI_FLASH_MD5 answers a digest that does not match the flash. */
  wrongMd5?: boolean;
  /** The USB cable is pulled while the first compressed block is being written. */
  disappearDuringWrite?: boolean;
}

export interface Esp32DoubleOptions {
  mac?: Uint8Array;
  /** Flash size in bytes; the JEDEC id reports it (0x16 = 4 MB). */
  flashSize?: number;
  /** Initial flash content, e.g. a partition table and an older NVS image, by address. */
  preload?: { address: number; data: Uint8Array }[];
  faults?: DoubleFaults;
  /** Called when the board "disappears" so the harness can tear the serial link down. */
  onDisappear?: () => void;
}

type Mode = "rom" | "stub";

interface DeflateWrite {
  offset: number;
  size: number;
  blocks: number;
  nextSeq: number;
  compressed: Buffer[];
  written: number;
}

interface StubImage {
  entry: number;
  text: Uint8Array;
  textStart: number;
  data: Uint8Array;
  dataStart: number;
}

export class Esp32RomDouble {
  readonly flash: Uint8Array;
  /** Every command the double received, in order (e.g. "SYNC", "READ_REG 0x40001000"), for assertions. */
  readonly log: string[] = [];
  readonly mac: Uint8Array;
  baudRate = 115200;
  #mode: Mode = "rom";
  readonly #faults: DoubleFaults;
  readonly #decoder = new SlipDecoder();
  readonly #regs = new Map<number, number>();
  readonly #ram = new Map<number, Uint8Array>();
  #mem: { size: number; blocks: number; blockSize: number; offset: number; nextSeq: number } | null = null;
  #defl: DeflateWrite | null = null;
  #reading: { addr: number; size: number; packet: number; sent: number; acked: number } | null = null;
  #jedec = 0;
  #bootTextSent = false;
  #checksumFaults = 0;
  #gone = false;
  #send: (bytes: Uint8Array) => void = () => {};
  readonly #onDisappear: (() => void) | undefined;
  readonly #stub: StubImage;

  constructor(o: Esp32DoubleOptions = {}) {
    this.mac = o.mac ?? Uint8Array.of(0x24, 0x0a, 0xc4, 0x12, 0x34, 0x56);
    const size = o.flashSize ?? 4 * 1024 * 1024;
    this.flash = new Uint8Array(size).fill(0xff);
    for (const p of o.preload ?? []) this.flash.set(p.data, p.address);
    this.#faults = o.faults ?? {};
    this.#onDisappear = o.onDisappear;
    this.#stub = loadEsptoolStub();
    this.#initRegisters(size);
  }

  get mode(): Mode {
    return this.#mode;
  }

  /**
   * What the auto-reset circuit does when the host pulses EN with IO0 low: back to the ROM loader, RAM and
   * loader state gone, flash kept. A pty carries no DTR/RTS, so the harness calls this between sessions.
   */
  reset(): void {
    this.#mode = "rom";
    this.#ram.clear();
    this.#mem = null;
    this.#defl = null;
    this.#reading = null;
    this.#bootTextSent = false;
    this.baudRate = 115200;
    this.log.push("RESET");
  }

  /** Connects the double to a byte sink; returns the function the serial link feeds received bytes into. */
  attach(send: (bytes: Uint8Array) => void): (bytes: Uint8Array) => void {
    this.#send = send;
    return (bytes) => {
      if (this.#gone) return;
      for (const frame of this.#decoder.push(bytes)) this.#onFrame(frame);
    };
  }

  #initRegisters(flashSize: number): void {
    const m = this.mac;
    // eFuse BLK0: word1 = MAC bytes 2..5, word2 = MAC bytes 0..1 in its low half (the MAC CRC above is not read).
    this.#regs.set(EFUSE_BASE + 4, ((m[2]! << 24) | (m[3]! << 16) | (m[4]! << 8) | m[5]!) >>> 0);
    this.#regs.set(EFUSE_BASE + 8, ((m[0]! << 8) | m[1]!) >>> 0);
    // word3: package ESP32-D0WD (1 << 9) and revision bit 0; word5 revision bit 1; APB date bit 31: chip v3.
    this.#regs.set(EFUSE_BASE + 12, (1 << 9) | (1 << 15));
    this.#regs.set(EFUSE_BASE + 20, 1 << 20);
    this.#regs.set(APB_CTL_DATE_REG, 0x80000000);
    // 40 MHz crystal: the ROM runs UART0 at 115200 with this divider.
    this.#regs.set(UART_CLKDIV_REG, Math.round(40_000_000 / 115200));
    const sizeCode = Math.log2(flashSize);
    this.#jedec = ((sizeCode & 0xff) << 16) | (0x40 << 8) | 0xc8; // GigaDevice GD25Q32-style id
  }

  #onFrame(frame: Uint8Array): void {
    if (this.#reading && frame.length === 4) {
      this.#onReadAck(frame);
      return;
    }
    if (frame.length < 8 || frame[0] !== 0x00) return; // not a request: the ROM ignores it
    const op = frame[1]!;
    const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const len = dv.getUint16(2, true);
    const chk = dv.getUint32(4, true);
    const data = frame.subarray(8);
    if (data.length !== len) {
      this.#fail(op, this.#mode === "rom" ? RomError.invalidMessage : StubError.badDataLen);
      return;
    }
    this.#handle(op, chk, data);
  }

  #handle(op: number, chk: number, data: Uint8Array): void {
    const u32 = (i: number): number =>
      new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(i * 4, true);
    switch (op) {
      case Op.SYNC:
        return this.#sync(data);
      case Op.READ_REG: {
        const addr = u32(0);
        this.log.push(`READ_REG 0x${addr.toString(16)}`);
        return this.#ok(op, this.#readReg(addr));
      }
      case Op.WRITE_REG: {
        for (let i = 0; i + 16 <= data.length; i += 16)
          this.#writeReg(u32(i / 4), u32(i / 4 + 1), u32(i / 4 + 2));
        this.log.push("WRITE_REG");
        return this.#ok(op);
      }
      case Op.MEM_BEGIN:
        this.#mem = { size: u32(0), blocks: u32(1), blockSize: u32(2), offset: u32(3), nextSeq: 0 };
        this.log.push(`MEM_BEGIN 0x${u32(3).toString(16)} ${u32(0)}`);
        return this.#ok(op);
      case Op.MEM_DATA:
        return this.#memData(op, chk, data);
      case Op.MEM_END:
        return this.#memEnd(op, u32(0), u32(1));
      case Op.SPI_ATTACH:
      case Op.SPI_SET_PARAMS:
        this.log.push(op === Op.SPI_ATTACH ? "SPI_ATTACH" : "SPI_SET_PARAMS");
        return this.#ok(op);
      case Op.CHANGE_BAUDRATE:
        this.baudRate = u32(0);
        this.log.push(`CHANGE_BAUDRATE ${this.baudRate}`);
        return this.#ok(op);
      case Op.FLASH_DEFL_BEGIN:
        return this.#deflBegin(op, u32(0), u32(1), u32(2), u32(3));
      case Op.FLASH_DEFL_DATA:
        return this.#deflData(op, chk, data);
      case Op.FLASH_DEFL_END:
        return this.#deflEnd(op);
      case Op.SPI_FLASH_MD5:
        return this.#md5(op, u32(0), u32(1));
      case Op.READ_FLASH:
        if (this.#mode !== "stub") return this.#unsupported(op);
        return this.#readFlash(op, u32(0), u32(1), u32(3));
      case Op.ERASE_REGION:
        if (this.#mode !== "stub") return this.#unsupported(op);
        this.flash.fill(0xff, u32(0), u32(0) + u32(1));
        this.log.push(`ERASE_REGION 0x${u32(0).toString(16)} ${u32(1)}`);
        return this.#ok(op);
      default:
        return this.#unsupported(op);
    }
  }

  #sync(data: Uint8Array): void {
    this.log.push("SYNC");
    const f = this.#faults;
    if (f.noSync) return;
    if (f.bootText === "spi-boot") {
      // An app is running: every reset prints the banner and the SYNC bytes go nowhere.
      this.#sendRaw(
        ascii(
          "ets Jul 29 2019 12:21:46\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n" +
            "configsip: 0, SPIWP:0xee\r\nmode:DIO, clock div:2\r\nentry 0x400805f0\r\nI (29) boot: ESP-IDF v5.1 2nd stage bootloader\r\n",
        ),
      );
      return;
    }
    if (f.bootText === "download" && !this.#bootTextSent) {
      this.#bootTextSent = true;
      this.#sendRaw(
        ascii(
          "ets Jul 29 2019 12:21:46\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download\r\n",
        ),
      );
      return;
    }
    const pattern =
      data.length === 36 &&
      data[0] === 0x07 &&
      data[1] === 0x07 &&
      data[2] === 0x12 &&
      data[3] === 0x20 &&
      data.subarray(4).every((b) => b === 0x55);
    if (!pattern) return this.#fail(Op.SYNC, RomError.invalidMessage);
    if (this.#mode === "stub") return this.#ok(Op.SYNC);
    // The ROM answers one SYNC with eight responses, each with a non-zero value.
    for (let i = 0; i < 8; i++) this.#ok(Op.SYNC, SYNC_REPLY_VALUE);
  }

  #readReg(addr: number): number {
    if (addr === CHIP_MAGIC_REG) return CHIP_MAGIC_ESP32;
    return this.#regs.get(addr) ?? 0;
  }

  #writeReg(addr: number, value: number, mask: number): void {
    const old = this.#regs.get(addr) ?? 0;
    this.#regs.set(addr, ((old & ~mask) | (value & mask)) >>> 0);
    if (addr === SPI0 && value & SPI_CMD_USR) this.#spiUserCommand();
  }

  /** SPI0 user command, as esptool drives it for RDID: command byte in USR2's low bits, answer in W0. */
  #spiUserCommand(): void {
    const command = (this.#regs.get(SPI0 + 0x24) ?? 0) & 0xff;
    const misoBits = ((this.#regs.get(SPI0 + 0x2c) ?? 0) & 0xffffff) + 1;
    if (command === 0x9f)
      this.#regs.set(SPI0 + 0x80, this.#jedec & (misoBits >= 32 ? 0xffffffff : (1 << misoBits) - 1));
    this.log.push(`SPI_CMD 0x${command.toString(16)}`);
    this.#regs.set(SPI0, (this.#regs.get(SPI0) ?? 0) & ~SPI_CMD_USR);
  }

  #memData(op: number, chk: number, data: Uint8Array): void {
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const size = dv.getUint32(0, true);
    const seq = dv.getUint32(4, true);
    const payload = data.subarray(16);
    if (!this.#mem) return this.#fail(op, RomError.failedToAct);
    if (payload.length !== size) return this.#fail(op, RomError.invalidMessage);
    if (checksum(payload) !== chk) return this.#fail(op, RomError.invalidCrc);
    if (seq !== this.#mem.nextSeq) return this.#fail(op, RomError.failedToAct);
    this.#ram.set(this.#mem.offset + seq * this.#mem.blockSize, payload.slice());
    this.#mem.nextSeq++;
    this.#ok(op);
  }

  #memEnd(op: number, noEntry: number, entry: number): void {
    this.log.push(`MEM_END 0x${entry.toString(16)}`);
    this.#ok(op);
    if (noEntry !== 0) return;
    // The ROM jumps to the entry point; only the genuine stub, loaded where it belongs, says hello.
    const ok =
      entry === this.#stub.entry &&
      equal(this.#ramAt(this.#stub.textStart, this.#stub.text.length), this.#stub.text) &&
      equal(this.#ramAt(this.#stub.dataStart, this.#stub.data.length), this.#stub.data);
    if (!ok) return;
    this.#mode = "stub";
    this.#send(slipEncode(ascii("OHAI")));
  }

  #ramAt(addr: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (const [start, bytes] of this.#ram) {
      const from = Math.max(start, addr);
      const to = Math.min(start + bytes.length, addr + length);
      if (from < to) out.set(bytes.subarray(from - start, to - start), from - addr);
    }
    return out;
  }

  #deflBegin(op: number, size: number, blocks: number, _blockSize: number, offset: number): void {
    this.log.push(`FLASH_DEFL_BEGIN 0x${offset.toString(16)} ${size}`);
    if (offset + size > this.flash.length)
      return this.#fail(op, this.#mode === "rom" ? RomError.failedToAct : StubError.tooMuchData);
    this.flash.fill(0xff, offset, offset + Math.ceil(size / SECTOR) * SECTOR);
    this.#defl = { offset, size, blocks, nextSeq: 0, compressed: [], written: 0 };
    this.#ok(op);
  }

  #deflData(op: number, chk: number, data: Uint8Array): void {
    const w = this.#defl;
    if (!w) return this.#fail(op, this.#mode === "rom" ? RomError.failedToAct : StubError.notInFlashMode);
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const size = dv.getUint32(0, true);
    const seq = dv.getUint32(4, true);
    const payload = data.subarray(16);
    this.log.push(`FLASH_DEFL_DATA seq=${seq} ${payload.length}`);
    if (payload.length !== size)
      return this.#fail(op, this.#mode === "rom" ? RomError.invalidMessage : StubError.badDataLen);
    const f = this.#faults;
    const corrupted = f.badChecksum === "always" || (f.badChecksum === "once" && this.#checksumFaults === 0);
    if (checksum(payload) !== chk || corrupted) {
      this.#checksumFaults++;
      return this.#fail(op, this.#mode === "rom" ? RomError.invalidCrc : StubError.badChecksum);
    }
    if (seq !== w.nextSeq)
      return this.#fail(op, this.#mode === "rom" ? RomError.failedToAct : StubError.badDataLen);
    w.compressed.push(Buffer.from(payload));
    let out: Buffer;
    try {
      out = inflateSync(Buffer.concat(w.compressed), { finishFlush: zc.Z_SYNC_FLUSH });
    } catch {
      return this.#fail(op, this.#mode === "rom" ? RomError.failedToAct : StubError.inflate);
    }
    if (out.length > w.size)
      return this.#fail(op, this.#mode === "rom" ? RomError.failedToAct : StubError.tooMuchData);
    if (f.disappearDuringWrite) {
      // Half the block reaches the flash, then the USB link is gone: no answer, ever.
      const half = Math.floor((out.length - w.written) / 2);
      this.flash.set(out.subarray(w.written, w.written + half), w.offset + w.written);
      this.#gone = true;
      this.log.push("DISAPPEARED");
      this.#onDisappear?.();
      return;
    }
    this.flash.set(out.subarray(w.written), w.offset + w.written);
    w.written = out.length;
    w.nextSeq++;
    this.#ok(op);
  }

  #deflEnd(op: number): void {
    const w = this.#defl;
    this.log.push("FLASH_DEFL_END");
    if (!w) return this.#fail(op, this.#mode === "rom" ? RomError.failedToAct : StubError.notInFlashMode);
    this.#defl = null;
    if (w.written !== w.size)
      return this.#fail(op, this.#mode === "rom" ? RomError.failedToAct : StubError.notEnoughData);
    this.#ok(op);
  }

  #md5(op: number, addr: number, size: number): void {
    this.log.push(`SPI_FLASH_MD5 0x${addr.toString(16)} ${size}`);
    const digest = createHash("md5")
      .update(this.flash.subarray(addr, addr + size))
      .digest();
    if (this.#faults.wrongMd5) digest[0] = digest[0]! ^ 0xff;
    // The ROM answers the digest as 32 hex characters, the stub as 16 raw bytes.
    this.#ok(op, 0, this.#mode === "rom" ? ascii(digest.toString("hex")) : new Uint8Array(digest));
  }

  #readFlash(op: number, addr: number, size: number, packet: number): void {
    this.log.push(`READ_FLASH 0x${addr.toString(16)} ${size}`);
    if (addr + size > this.flash.length || packet === 0) return this.#fail(op, StubError.badDataLen);
    this.#ok(op);
    this.#reading = { addr, size, packet, sent: 0, acked: 0 };
    this.#sendReadPacket();
  }

  #sendReadPacket(): void {
    const r = this.#reading!;
    const n = Math.min(r.packet, r.size - r.sent);
    this.#send(slipEncode(this.flash.slice(r.addr + r.sent, r.addr + r.sent + n)));
    r.sent += n;
  }

  #onReadAck(frame: Uint8Array): void {
    const r = this.#reading!;
    r.acked = new DataView(frame.buffer, frame.byteOffset, 4).getUint32(0, true);
    if (r.acked < r.sent) return;
    if (r.sent < r.size) return this.#sendReadPacket();
    // All acknowledged: the stub closes with the MD5 of everything it sent.
    this.#reading = null;
    this.#send(
      slipEncode(
        createHash("md5")
          .update(this.flash.subarray(r.addr, r.addr + r.size))
          .digest(),
      ),
    );
  }

  #unsupported(op: number): void {
    this.log.push(`UNSUPPORTED 0x${op.toString(16)}`);
    if (this.#mode === "stub") return this.#fail(op, StubError.invalidCommand);
    // The ROM does not echo an unknown opcode: esptool recognises "invalid message" by the op mismatch.
    this.#respond(0x00, 0, Uint8Array.of(1, RomError.invalidMessage, 0, 0));
  }

  #ok(op: number, value = 0, payload: Uint8Array = new Uint8Array(0)): void {
    const status = this.#mode === "rom" ? Uint8Array.of(0, 0, 0, 0) : Uint8Array.of(0, 0);
    this.#respond(op, value, concat(payload, status));
  }

  #fail(op: number, error: number): void {
    const status = this.#mode === "rom" ? Uint8Array.of(1, error, 0, 0) : Uint8Array.of(1, error);
    this.#respond(op, 0, status);
  }

  #respond(op: number, value: number, data: Uint8Array): void {
    const frame = new Uint8Array(8 + data.length);
    const dv = new DataView(frame.buffer);
    frame[0] = 0x01;
    frame[1] = op;
    dv.setUint16(2, data.length, true);
    dv.setUint32(4, value >>> 0, true);
    frame.set(data, 8);
    this.#send(slipEncode(frame));
  }

  #sendRaw(bytes: Uint8Array): void {
    this.#send(bytes);
  }
}

/** The flasher stub esptool-js uploads; the double checks it receives exactly this. */
function loadEsptoolStub(): StubImage {
  const require = createRequire(import.meta.url);
  const json = require("esptool-js/lib/targets/stub_flasher/esp32.json") as {
    entry: number;
    text: string;
    text_start: number;
    data: string;
    data_start: number;
  };
  return {
    entry: json.entry,
    text: new Uint8Array(Buffer.from(json.text, "base64")),
    textStart: json.text_start,
    data: new Uint8Array(Buffer.from(json.data, "base64")),
    dataStart: json.data_start,
  };
}

/** The loader's data checksum: 0xEF XOR every payload byte. */
export function checksum(data: Uint8Array): number {
  let c = 0xef;
  for (const b of data) c ^= b;
  return c;
}

function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
