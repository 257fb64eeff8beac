/**
 * One ESP32 on a serial port, driven by esptool-js: connect (reset into the ROM loader, sync, identify,
 * upload the stub, raise the baud rate), read the MAC and flash size, read and write flash with compressed
 * blocks and an MD5 check, and reset into the application. esptool-js failures are turned into
 * ProvisionErrors that say what happened to the board.
 */
import { createHash } from "node:crypto";
import { CustomReset, ESPLoader, Transport } from "esptool-js";
import { ProvisionError } from "./errors";
import { NodeSerialPort } from "./node-serial-port";

/** Releases EN with IO0 high so the app runs; esptool-js's own hard reset never pulses EN on the classic circuit. */
export const RUN_APP_RESET = "D0|R1|W100|R0";
export const ROM_BAUD = 115200;

export interface BoardInfo {
  chip: string;
  description: string;
  mac: string;
  flashSize: number;
  flashId: number;
}

export interface ConnectOptions {
  path: string;
  baud: number;
  usbVendorId?: number;
  usbProductId?: number;
  attempts?: number;
  /** Progress lines (what is happening); esptool-js's own chatter goes to `debug`. */
  progress: (line: string) => void;
  debug?: (line: string) => void;
}

export class EspFlasher {
  readonly info: BoardInfo;
  readonly #loader: ESPLoader;
  readonly #port: NodeSerialPort;
  readonly #transport: Transport;

  private constructor(info: BoardInfo, loader: ESPLoader, port: NodeSerialPort, transport: Transport) {
    this.info = info;
    this.#loader = loader;
    this.#port = port;
    this.#transport = transport;
  }

  static async connect(o: ConnectOptions): Promise<EspFlasher> {
    const debug = o.debug ?? (() => {});
    const portOptions = {
      onNoControlLines: (m: string) => debug(m),
      ...(o.usbVendorId !== undefined ? { usbVendorId: o.usbVendorId } : {}),
      ...(o.usbProductId !== undefined ? { usbProductId: o.usbProductId } : {}),
    };
    const port = new NodeSerialPort(o.path, portOptions);
    // esptool-js types its port as the DOM SerialPort; ours implements the part it uses.
    const transport = new Transport(port as unknown as ConstructorParameters<typeof Transport>[0], false);
    // Transport.trace prints to stdout even with tracing off (flash-size lookups, end of the read loop).
    transport.trace = (message: string) => debug(message);
    const loader = new ESPLoader({
      transport,
      baudrate: o.baud,
      romBaudrate: ROM_BAUD,
      terminal: { clean: () => {}, writeLine: (l: string) => debug(l), write: (l: string) => debug(l) },
    });
    try {
      o.progress(`connecting at ${ROM_BAUD} baud`);
      try {
        await loader.detectChip("default_reset", o.attempts ?? 7);
      } catch (err) {
        throw connectError(o.path, port, err);
      }
      const chip = loader.chip.CHIP_NAME;
      if (chip !== "ESP32")
        throw new ProvisionError(
          "not_esp32",
          `${o.path}: found an ${chip}; this fleet's firmware and NVS layout are for the ESP32`,
        );
      const description = await loader.chip.getChipDescription(loader);
      const crystal = await loader.chip.getCrystalFreq(loader);
      const mac = await loader.chip.readMac(loader);
      o.progress(`${description}, ${crystal} MHz crystal, MAC ${mac}`);
      o.progress("uploading the flasher stub");
      await loader.runStub();
      if (o.baud !== ROM_BAUD) {
        o.progress(`switching to ${o.baud} baud`);
        await loader.changeBaud();
      }
      const flashId = await loader.readFlashId();
      const sizeName = await loader.detectFlashSize();
      if (!sizeName)
        throw new ProvisionError(
          "flash_error",
          `${o.path}: cannot identify the flash chip (JEDEC id 0x${flashId.toString(16)}); check the board`,
        );
      const flashSize = loader.flashSizeBytes(sizeName as Parameters<ESPLoader["flashSizeBytes"]>[0]);
      return new EspFlasher({ chip, description, mac, flashSize, flashId }, loader, port, transport);
    } catch (err) {
      await release(transport, port);
      throw asProvisionError(o.path, port, err, "connecting");
    }
  }

  async readFlash(address: number, size: number): Promise<Uint8Array> {
    try {
      return await this.#loader.readFlash(address, size);
    } catch (err) {
      throw asProvisionError(this.#port.path, this.#port, err, `reading flash at 0x${address.toString(16)}`);
    }
  }

  /** Compressed write; esptool-js then compares the flash's MD5 with the image's. */
  async write(
    address: number,
    data: Uint8Array,
    onProgress: (written: number, total: number) => void,
  ): Promise<void> {
    try {
      await this.#loader.writeFlash({
        fileArray: [{ data, address }],
        flashMode: "keep",
        flashFreq: "keep",
        flashSize: "keep",
        eraseAll: false,
        compress: true,
        reportProgress: (_i, written, total) => onProgress(written, total),
        calculateMD5Hash: (image) => createHash("md5").update(image).digest("hex"),
      });
    } catch (err) {
      throw asProvisionError(this.#port.path, this.#port, err, `writing flash at 0x${address.toString(16)}`);
    }
  }

  /** Pulses EN with IO0 released so the board boots the firmware that now finds its identity. */
  async resetToApp(): Promise<void> {
    await new CustomReset(this.#transport, RUN_APP_RESET).reset();
  }

  async close(): Promise<void> {
    await release(this.#transport, this.#port);
  }
}

/**
 * esptool-js's disconnect waits until its streams are unlocked, which never happens after a failed write
 * (it does not release the writer then). Closing our port drops the streams, which ends that wait.
 */
async function release(transport: Transport, port: NodeSerialPort): Promise<void> {
  const done = transport.disconnect().then(
    () => true,
    () => true,
  );
  const finished = await Promise.race([done, new Promise<false>((r) => setTimeout(() => r(false), 1500))]);
  if (!finished) {
    await port.close();
    await Promise.race([done, new Promise((r) => setTimeout(r, 1000))]);
  }
}

function connectError(path: string, port: NodeSerialPort, err: unknown): ProvisionError {
  if (err instanceof ProvisionError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/no serial port|no permission|in use|cannot open/.test(message))
    return new ProvisionError("no_port", message);
  if (port.lost)
    return new ProvisionError(
      "board_lost",
      `${path}: the board disappeared while connecting (${port.lost.message})`,
    );
  const text = port.recentText();
  const boot = /boot:(0x[0-9a-fA-F]+)(?: \(([^)]*\)?)\))?/.exec(text);
  if (boot && !/waiting for download/.test(text)) {
    return new ProvisionError(
      "wrong_boot_mode",
      `${path}: the board booted its application (boot:${boot[1]}${boot[2] ? ` ${boot[2]}` : ""}) instead of the download mode; ` +
        "hold BOOT (IO0) low while resetting, or check the DTR/RTS auto-reset wiring",
    );
  }
  if (port.receivedBytes === 0) {
    return new ProvisionError(
      "no_sync",
      `${path}: no answer to SYNC; is an ESP32 connected and powered, in download mode, and is no other program using the port?`,
    );
  }
  return new ProvisionError(
    "no_sync",
    `${path}: received ${port.receivedBytes} bytes but no valid SYNC answer (${message}); noise, wrong adapter or another chip`,
  );
}

/** Maps esptool-js's messages to what happened; the raw message stays at the end for the curious. */
export function asProvisionError(
  path: string,
  port: NodeSerialPort,
  err: unknown,
  doing: string,
): ProvisionError {
  if (err instanceof ProvisionError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (port.lost || /EIO|ENXIO|disconnected|device has been lost/i.test(message)) {
    return new ProvisionError(
      "board_lost",
      `${path}: the board disappeared while ${doing} (${port.lost?.message ?? message}); reconnect it and run again`,
    );
  }
  if (/MD5 of file does not match/i.test(message)) {
    return new ProvisionError(
      "md5_mismatch",
      `${path}: the flash MD5 differs from the image after ${doing}; the write did not stick (flash worn or write-protected?)`,
    );
  }
  const status = /failed with status (\d+),(\d+)/.exec(message);
  if (status && Number(status[2]) === 0xc1) {
    return new ProvisionError(
      "bad_checksum",
      `${path}: the board rejected data blocks with a bad checksum while ${doing}, three times in a row; noisy cable? try a lower --baud`,
    );
  }
  if (/No serial data received|Serial data stream stopped|Timeout/i.test(message)) {
    return new ProvisionError(
      "board_lost",
      `${path}: the board stopped answering while ${doing}; reconnect it and run again`,
    );
  }
  return new ProvisionError("flash_error", `${path}: ${doing} failed: ${message}`);
}
