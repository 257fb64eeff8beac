import { spawn } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SerialPortMock } from "serialport";
import { describe, expect, it } from "vitest";
import {
  applyBinding,
  checkBinding,
  type BindingsFile,
  type BoardBinding,
} from "../../src/provision/bindings";
import { NodeSerialPort } from "../../src/provision/node-serial-port";
import {
  buildPartitionTable,
  findNvsPartition,
  MODDABLE_PARTITIONS,
  parsePartitionTable,
} from "../../src/provision/partition-table";
import { matchEspPorts } from "../../src/provision/ports";
import { initialBootCounter } from "../../src/provision/nvs-image";

describe("NodeSerialPort (the Web-Serial-like adapter esptool-js drives)", () => {
  it("always sets DTR and RTS together, so changing one never flips the other", async () => {
    SerialPortMock.binding.createPort("/dev/ttyMOCK0", { echo: true, record: true });
    const calls: unknown[] = [];
    const port = new NodeSerialPort("/dev/ttyMOCK0", {
      createPort: (o) => {
        const p = new SerialPortMock({ ...o, autoOpen: false });
        const set = p.set.bind(p);
        p.set = (opts, cb) => {
          calls.push({ ...opts });
          return set(opts, cb);
        };
        return p;
      },
    });
    await port.open({ baudRate: 115200 });
    // esptool-js's classic reset and its setRTS (which sends only requestToSend).
    await port.setSignals({ dataTerminalReady: false, requestToSend: true });
    await port.setSignals({ requestToSend: false });
    await port.setSignals({ dataTerminalReady: true });
    expect(calls).toEqual([
      { dtr: false, rts: true, brk: false },
      { dtr: false, rts: false, brk: false },
      { dtr: true, rts: false, brk: false },
    ]);
    // Bytes written come back through the readable stream (the mock echoes).
    const writer = port.writable!.getWriter();
    await writer.write(Uint8Array.of(0xc0, 0x01, 0xc0));
    writer.releaseLock();
    const reader = port.readable!.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    expect(Array.from(value!)).toEqual([0xc0, 0x01, 0xc0]);
    expect(port.receivedBytes).toBe(3);
    await port.close();
    expect(port.readable).toBeNull();
    SerialPortMock.binding.reset();
  });

  it("tolerates ENOTTY on a pty, reports it once, and changes the baud rate in place", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nsp-"));
    const a = join(dir, "A");
    const socat = spawn("socat", [`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${join(dir, "B")}`], {
      stdio: "ignore",
    });
    try {
      for (
        let i = 0;
        i < 500 &&
        !(await stat(a).then(
          () => true,
          () => false,
        ));
        i++
      )
        await new Promise((r) => setTimeout(r, 10));
      const notes: string[] = [];
      const port = new NodeSerialPort(a, { onNoControlLines: (m) => notes.push(m) });
      await port.open({ baudRate: 115200 });
      await port.setSignals({ dataTerminalReady: false, requestToSend: true });
      await port.setSignals({ requestToSend: false });
      expect(notes).toEqual([`${a} has no DTR/RTS lines (a pty?): the board cannot be reset from here`]);
      await port.setBaudRate(921600);
      await port.close();
    } finally {
      if (socat.pid !== undefined) process.kill(socat.pid, "SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("names a missing port plainly", async () => {
    const port = new NodeSerialPort("/dev/ttyDOES-NOT-EXIST");
    await expect(port.open({ baudRate: 115200 })).rejects.toThrow(
      "no serial port at /dev/ttyDOES-NOT-EXIST: is the board plugged in?",
    );
  });
});

describe("partition table", () => {
  it("finds Moddable's NVS partition in a table it built, and rejects damage", () => {
    const table = buildPartitionTable(MODDABLE_PARTITIONS);
    const parsed = parsePartitionTable(table);
    expect(parsed.ok && findNvsPartition(parsed.entries)).toEqual({
      label: "nvs",
      type: 1,
      subtype: 2,
      offset: 0x9000,
      size: 0x6000,
    });
    expect(parsePartitionTable(new Uint8Array(0xc00).fill(0xff))).toMatchObject({
      ok: false,
      reason: "blank",
    });
    const damaged = table.slice();
    damaged[5] = 0x80; // nvs offset 0x9000 → 0x8000: the MD5 no longer matches
    expect(parsePartitionTable(damaged)).toMatchObject({
      ok: false,
      reason: "invalid",
      message: "partition table MD5 does not match its entries",
    });
  });
});

describe("bindings: one identity per board, one board per identity", () => {
  const bound = (deviceId: string, mac: string): BoardBinding => ({
    deviceId,
    mac,
    certSerial: "01",
    certSha256: "ab",
    keyId: 1,
    chip: "ESP32",
    flashSize: 4194304,
    nvsOffset: 0x9000,
    nvsSize: 0x6000,
    provisionedAt: "2026-01-01T00:00:00.000Z",
  });
  const file: BindingsFile = { version: 1, boards: [bound("a", "m1"), bound("b", "m2")], released: [] };

  it("allows the same pair again and new pairs, refuses crossings unless forced", () => {
    expect(checkBinding(file, "a", "m1", false)).toEqual({ ok: true, release: [] });
    expect(checkBinding(file, "c", "m3", false)).toEqual({ ok: true, release: [] });
    const onBound = checkBinding(file, "c", "m1", false);
    expect(onBound.ok || onBound.error.code).toBe("already_bound");
    const elsewhere = checkBinding(file, "a", "m3", false);
    expect(elsewhere.ok || elsewhere.error.code).toBe("identity_elsewhere");
    const both = checkBinding(file, "a", "m2", true);
    expect(both).toEqual({ ok: true, release: [file.boards[1], file.boards[0]] });
    if (!both.ok) return;
    const next = applyBinding(file, bound("a", "m2"), both.release, new Date("2026-02-01T00:00:00Z"));
    expect(next.boards).toEqual([bound("a", "m2")]);
    expect(next.released.map((r) => `${r.deviceId}@${r.mac}`)).toEqual(["b@m2", "a@m1"]);
  });
});

describe("finding boards and seeding the boot counter", () => {
  it("matches ESP32 USB-UART bridges by VID/PID only", () => {
    expect(
      matchEspPorts([
        { path: "/dev/ttyUSB1", vendorId: "1a86", productId: "7523" },
        { path: "/dev/ttyUSB0", vendorId: "10c4", productId: "ea60", serialNumber: "0001" },
        { path: "/dev/ttyACM0", vendorId: "2341", productId: "0043" },
        { path: "/dev/ttyS0" },
      ]).map((p) => `${p.path} ${p.bridge}`),
    ).toEqual(["/dev/ttyUSB0 Silicon Labs CP210x", "/dev/ttyUSB1 WCH CH340"]);
  });

  it("never lowers a board's boot counter and never restarts a wiped board at 0", () => {
    const now = new Date("2026-11-26T08:00:00Z");
    const minutes = Math.floor(now.getTime() / 60_000);
    expect(initialBootCounter(undefined, now)).toBe(minutes);
    expect(initialBootCounter(12, now)).toBe(minutes);
    expect(initialBootCounter(minutes + 500, now)).toBe(minutes + 500);
  });
});
