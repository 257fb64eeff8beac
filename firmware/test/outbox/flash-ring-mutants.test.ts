// The power-cut property must be able to fail. Each mutant below is the ring's source with one safeguard
// taken out; the property test has to catch every one of them.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { checkRingProperty, type RingClass } from "./ring-property";

const here = dirname(fileURLToPath(import.meta.url));
const srcDir = resolve(here, "../../src/outbox");
const source = readFileSync(join(srcDir, "flash-ring.ts"), "utf8");
const work = mkdtempSync(join(tmpdir(), "ring-mutants-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function mutant(name: string, edits: [string, string][]): Promise<RingClass> {
  let text = source
    .replace(`from "../util/crc32"`, `from ${JSON.stringify(resolve(srcDir, "../util/crc32.ts"))}`)
    .replace(`from "./flash-area"`, `from ${JSON.stringify(join(srcDir, "flash-area.ts"))}`);
  for (const [from, to] of edits) {
    // A mutant that no longer applies would pass for the wrong reason.
    expect(text.split(from).length - 1, `"${from}" occurs once in flash-ring.ts`).toBe(1);
    text = text.replace(from, to);
  }
  const file = join(work, `${name}.ts`);
  writeFileSync(file, text);
  return ((await import(file)) as { default: RingClass }).default;
}

const COMMIT_LAST = [
  "    this.#flash.write(at, body);\n    this.#flash.write(at + body.length, u32le(COMMIT));",
  "    this.#flash.write(at + body.length, u32le(COMMIT));\n    this.#flash.write(at, body);",
] as [string, string];
const CRC_CHECK = ['    if (view.getUint32(offset + 12, true) !== crc) return { kind: "torn" };\n', ""] as [
  string,
  string,
];

const mutants: { name: string; edits: [string, string][] }[] = [
  { name: "commit-word-first-without-crc-check", edits: [COMMIT_LAST, CRC_CHECK] },
  {
    name: "erase-without-clearing-the-magic",
    edits: [
      [
        "      this.#flash.write(next * this.#sectorSize, new Uint8Array(FLASH_WRITE_UNIT)); // clear the magic first\n",
        "",
      ],
    ],
  },
  {
    name: "confirmations-not-recovered",
    edits: [["confirms.push({ boot: rec.boot, seq: rec.seq });", "void 0;"]],
  },
  {
    name: "append-after-a-torn-tail",
    edits: [['headOpen = rec.kind === "end";', 'headOpen = rec.kind !== "record";']],
  },
];

describe("flash ring power-cut property, against broken rings", () => {
  for (const m of mutants)
    it(`catches the mutant "${m.name}"`, async () => {
      const Ring = await mutant(m.name, m.edits);
      expect(() => checkRingProperty(Ring, { numRuns: 1000, shrink: false })).toThrow();
    });
});
