/**
 * A Web-Serial-like port over node `serialport`, the shape esptool-js's `Transport` drives
 * (open, close, readable, writable, setSignals, getInfo, setBaudRate).
 *
 * Two traps it handles (see ../shared/REFERENCE.md):
 * - `serialport.set()` fills every control line it is not given with its default (DTR and RTS true), so
 *   toggling RTS alone would also assert DTR. Both lines are tracked and always passed together.
 * - On a pty (socat, CI) the DTR/RTS/break ioctls fail with ENOTTY. There is no reset circuit to drive,
 *   so that is reported once and otherwise ignored.
 */
import { SerialPort } from "serialport";

export interface WebSerialLikeOptions {
  baudRate: number;
}

export interface SerialSignals {
  dataTerminalReady?: boolean;
  requestToSend?: boolean;
  break?: boolean;
}

/** The part of node-serialport's stream used here; `SerialPort` and `SerialPortMock` both provide it. */
export type UnderlyingPort = Pick<
  SerialPort,
  "open" | "close" | "write" | "drain" | "set" | "update" | "on" | "isOpen"
>;

export interface NodeSerialPortOptions {
  usbVendorId?: number;
  usbProductId?: number;
  /** Called once when the port has no modem-control lines (a pty). */
  onNoControlLines?: (message: string) => void;
  /** Creates the unopened port; default: node-serialport's native `SerialPort`. */
  createPort?: (o: { path: string; baudRate: number }) => UnderlyingPort;
}

/** How much of the received byte stream is kept for diagnosing a failed connection (boot banners). */
const RECENT_BYTES = 4096;

export class NodeSerialPort {
  readonly path: string;
  readable: ReadableStream<Uint8Array> | null = null;
  writable: WritableStream<Uint8Array> | null = null;
  #port: UnderlyingPort | null = null;
  #dtr = false;
  #rts = false;
  #noControlLines = false;
  #recent = new Uint8Array(0);
  #received = 0;
  #lost: Error | undefined;
  readonly #o: NodeSerialPortOptions;

  constructor(path: string, o: NodeSerialPortOptions = {}) {
    this.path = path;
    this.#o = o;
  }

  /** Set when the device went away (unplugged, pty closed) while open. */
  get lost(): Error | undefined {
    return this.#lost;
  }

  /** Total bytes received since open. */
  get receivedBytes(): number {
    return this.#received;
  }

  /** The last bytes received, as Latin-1 text: enough to recognise a boot banner. */
  recentText(): string {
    return Buffer.from(this.#recent).toString("latin1");
  }

  getInfo(): { usbVendorId?: number; usbProductId?: number } {
    const info: { usbVendorId?: number; usbProductId?: number } = {};
    if (this.#o.usbVendorId !== undefined) info.usbVendorId = this.#o.usbVendorId;
    if (this.#o.usbProductId !== undefined) info.usbProductId = this.#o.usbProductId;
    return info;
  }

  async open(opts: WebSerialLikeOptions): Promise<void> {
    if (this.#port?.isOpen) throw new Error(`${this.path} is already open`);
    const create = this.#o.createPort ?? ((o) => new SerialPort({ ...o, autoOpen: false }));
    const port = create({ path: this.path, baudRate: opts.baudRate });
    await new Promise<void>((resolve, reject) =>
      port.open((err) => (err ? reject(openError(this.path, err)) : resolve())),
    );
    this.#port = port;
    this.#lost = undefined;
    this.#received = 0;
    this.#recent = new Uint8Array(0);

    let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
    let closed = false;
    const finish = (err?: Error): void => {
      if (closed) return;
      closed = true;
      if (err) controller?.error(err);
      else controller?.close();
    };
    port.on("data", (chunk: Buffer) => {
      this.#remember(chunk);
      if (!closed) controller?.enqueue(new Uint8Array(chunk));
    });
    port.on("close", (err?: Error & { disconnected?: boolean }) => {
      if (err) this.#lost = err;
      finish(err ?? undefined);
    });
    port.on("error", (err: Error) => {
      this.#lost ??= err;
      finish(err);
    });
    this.readable = new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
      },
      cancel: () => {
        closed = true;
      },
    });
    this.writable = new WritableStream<Uint8Array>({
      write: (chunk) =>
        new Promise<void>((resolve, reject) => {
          if (!port.isOpen) return reject(this.#lost ?? new Error(`${this.path} is closed`));
          port.write(Buffer.from(chunk), (err) => {
            if (err) {
              this.#lost ??= err;
              return reject(err);
            }
            port.drain((e) => (e ? reject(e) : resolve()));
          });
        }),
    });
  }

  async close(): Promise<void> {
    const port = this.#port;
    this.#port = null;
    this.readable = null;
    this.writable = null;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  async setSignals(s: SerialSignals): Promise<void> {
    if (s.dataTerminalReady !== undefined) this.#dtr = s.dataTerminalReady;
    if (s.requestToSend !== undefined) this.#rts = s.requestToSend;
    const port = this.#port;
    if (!port?.isOpen || this.#noControlLines) return;
    await new Promise<void>((resolve, reject) => {
      port.set({ dtr: this.#dtr, rts: this.#rts, brk: s.break ?? false }, (err) => {
        if (!err) return resolve();
        if (isNoTty(err)) {
          this.#noControlLines = true;
          this.#o.onNoControlLines?.(
            `${this.path} has no DTR/RTS lines (a pty?): the board cannot be reset from here`,
          );
          return resolve();
        }
        reject(err);
      });
    });
  }

  /** Changes the speed in place; esptool-js otherwise closes and reopens the port, which resets some boards. */
  async setBaudRate(baudRate: number): Promise<void> {
    const port = this.#port;
    if (!port?.isOpen) throw new Error(`${this.path} is not open`);
    await new Promise<void>((resolve, reject) =>
      port.update({ baudRate }, (err) => (err ? reject(err) : resolve())),
    );
  }

  #remember(chunk: Buffer): void {
    this.#received += chunk.length;
    const joined = new Uint8Array(this.#recent.length + chunk.length);
    joined.set(this.#recent);
    joined.set(chunk, this.#recent.length);
    this.#recent = joined.length > RECENT_BYTES ? joined.slice(joined.length - RECENT_BYTES) : joined;
  }
}

function isNoTty(err: Error): boolean {
  return (err as NodeJS.ErrnoException).code === "ENOTTY" || /Inappropriate ioctl/i.test(err.message);
}

function openError(path: string, err: Error): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (/ENOENT|No such file/i.test(err.message) || code === "ENOENT")
    return new Error(`no serial port at ${path}: is the board plugged in?`);
  if (/EACCES|Permission denied/i.test(err.message))
    return new Error(`no permission to open ${path}: add yourself to the dialout group`);
  if (/busy|lock/i.test(err.message))
    return new Error(`${path} is in use by another program (a serial monitor?)`);
  return new Error(`cannot open ${path}: ${err.message}`);
}
