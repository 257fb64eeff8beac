/**
 * An ESP32 on the end of a serial line, for tests and the provisioning benchmark: a socat pty pair with
 * the ROM-loader double on one end; the code under test opens the other end like a USB-UART adapter.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SerialPort } from "serialport";
import { Esp32RomDouble, type Esp32DoubleOptions } from "./esp32-rom-double";

export interface VirtualBoard {
  /** The path to hand to the provisioning command, like /dev/ttyUSB0. */
  hostPath: string;
  double: Esp32RomDouble;
  /** True once the board was "unplugged" by the disappear fault. */
  readonly gone: boolean;
  stop(): Promise<void>;
}

export async function startVirtualBoard(o: Esp32DoubleOptions = {}): Promise<VirtualBoard> {
  const dir = await mkdtemp(join(tmpdir(), "esp32-double-"));
  const hostPath = join(dir, "ttyHOST");
  const boardPath = join(dir, "ttyBOARD");
  const socat = spawn("socat", [`pty,raw,echo=0,link=${hostPath}`, `pty,raw,echo=0,link=${boardPath}`], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let socatError = "";
  socat.stderr?.on("data", (d: Buffer) => (socatError += d.toString()));
  const spawnFailure = new Promise<never>((_, reject) =>
    socat.once("error", (err) => reject(new Error(`cannot start socat (is it installed?): ${err.message}`))),
  );
  await Promise.race([waitForPaths([hostPath, boardPath], socat, () => socatError), spawnFailure]);

  let gone = false;
  const port = new SerialPort({ path: boardPath, baudRate: 115200, autoOpen: false });
  const double = new Esp32RomDouble({
    ...o,
    onDisappear: () => {
      gone = true;
      killProcess(socat);
      if (port.isOpen) port.close(() => {});
      o.onDisappear?.();
    },
  });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  const feed = double.attach((bytes) => {
    if (!gone && port.isOpen) port.write(Buffer.from(bytes));
  });
  port.on("data", (chunk: Buffer) => feed(new Uint8Array(chunk)));
  port.on("error", () => {}); // the far end closing is expected when the CLI exits

  return {
    hostPath,
    double,
    get gone() {
      return gone;
    },
    async stop() {
      if (port.isOpen) await new Promise<void>((r) => port.close(() => r()));
      killProcess(socat);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPaths(paths: string[], proc: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const present = await Promise.all(
      paths.map((p) =>
        stat(p).then(
          () => true,
          () => false,
        ),
      ),
    );
    if (present.every(Boolean)) return;
    if (proc.exitCode !== null) throw new Error(`socat exited with ${proc.exitCode}: ${stderr().trim()}`);
    if (Date.now() > deadline) throw new Error(`socat did not create ${paths.join(", ")} within 5 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function killProcess(p: ChildProcess): void {
  if (p.exitCode === null && p.signalCode === null && p.pid !== undefined) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}
