import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import FlashRing from "../../../firmware/src/outbox/flash-ring";
import FileFlashArea from "../../src/flash/file-flash-area";
import { payloadFor } from "./helpers/payload";

const dir = mkdtempSync(join(tmpdir(), "file-flash-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const writer = resolve(import.meta.dirname, "helpers/ring-writer.ts");
const SECTORS = 256; // 1 MiB: about 3,600 readings of 257 bytes, more than a round writes

/** Runs the writer until it has reported `atLeast` appends, SIGKILLs it, and returns the last seq it reported. */
function appendUntilKilled(
  path: string,
  boot: number,
  atLeast: number,
): Promise<{ last: number; heldAtStart: number }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ["--import", "tsx", writer, path, String(SECTORS), String(boot)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let buffer = "";
    let last = -1;
    let heldAtStart = -1;
    let killed = false;
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith("ready ")) heldAtStart = Number(line.slice(6));
        else last = Number(line);
      }
      if (!killed && last >= atLeast) {
        killed = true;
        child.kill("SIGKILL");
      }
    });
    child.once("error", fail);
    child.once("exit", (code, signal) => {
      if (signal === "SIGKILL") done({ last, heldAtStart });
      else fail(new Error(`writer exited with ${code ?? signal} before it was killed`));
    });
  });
}

describe("file flash", () => {
  it("creates an erased, private file and refuses one of another size", () => {
    const path = join(dir, "fresh.bin");
    const flash = new FileFlashArea({ path, sectors: 2 });
    expect(flash.read(0, 8192).every((b) => b === 0xff)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    flash.write(4, new Uint8Array([0x0f, 0, 0, 0]));
    expect(() => flash.write(4, new Uint8Array([0xff, 0, 0, 0]))).toThrow(/set bits/);
    flash.close();
    expect(() => new FileFlashArea({ path, sectors: 3 })).toThrow(/expected/);
  });

  it("keeps every reading a SIGKILLed writer had appended, across three kills, and no torn one", async () => {
    const path = join(dir, "board.bin");
    const appended: { boot: number; last: number }[] = [];
    for (const [boot, atLeast] of [
      [1, 300],
      [2, 500],
      [3, 700],
    ] as const) {
      const before = boot === 1 ? 0 : heldIn(path);
      const { last, heldAtStart } = await appendUntilKilled(path, boot, atLeast);
      expect(heldAtStart).toBe(before); // the writer's own mount recovered what the last kill left
      appended.push({ boot, last });
    }
    const flash = new FileFlashArea({ path, sectors: SECTORS });
    const ring = new FlashRing({ flash });
    const got = [...ring.readings()];
    for (const { boot, last } of appended) {
      const ofBoot = got.filter((r) => r.boot === boot);
      // Everything reported after append() returned is there; at most the one being appended when the
      // kill came is there too (its commit word reached the file before the report).
      expect(ofBoot.length === last + 1 || ofBoot.length === last + 2).toBe(true);
      ofBoot.forEach((r, i) => {
        expect(r.seq).toBe(i);
        expect(Buffer.from(r.payload).equals(Buffer.from(payloadFor(boot, i)))).toBe(true);
      });
    }
    expect(got.map((r) => r.boot)).toEqual([...got.map((r) => r.boot)].sort((a, b) => a - b));
    flash.close();
  });
});

function heldIn(path: string): number {
  const flash = new FileFlashArea({ path, sectors: SECTORS });
  try {
    return new FlashRing({ flash }).unconfirmed;
  } finally {
    flash.close();
  }
}
