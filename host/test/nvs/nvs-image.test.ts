import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { csvToItems } from "../../src/nvs/csv";
import { NvsError, PAGE_SIZE } from "../../src/nvs/format";
import { readNvsImage } from "../../src/nvs/reader";
import type { NvsValue } from "../../src/nvs/reader";
import { buildNvsImage } from "../../src/nvs/writer";
import type { NvsWriteItem } from "../../src/nvs/writer";

const FIXTURES = resolve(import.meta.dirname, "../fixtures/nvs");
const GENERATED = join(FIXTURES, "generated");

function imageFromCsv(dir: string, name: string, size: number): Uint8Array {
  return buildNvsImage(
    csvToItems(readFileSync(join(dir, name), "utf8"), (p) => readFileSync(join(dir, p))),
    size,
  );
}

/** What each item should read back as, namespace by namespace. */
function expected(items: readonly NvsWriteItem[]): Map<string, Map<string, NvsValue>> {
  const out = new Map<string, Map<string, NvsValue>>();
  let ns: Map<string, NvsValue> | undefined;
  for (const it of items) {
    if (it.kind === "namespace") {
      ns = out.get(it.name) ?? new Map();
      out.set(it.name, ns);
    } else if (it.kind === "blob") ns!.set(it.key, { type: "blob", value: new Uint8Array(it.value) });
    else ns!.set(it.key, { type: it.kind, value: it.value } as NvsValue);
  }
  return out;
}

function expectNvsError(f: () => unknown, code: string, message: RegExp): void {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(NvsError);
    expect((err as NvsError).code).toBe(code);
    expect((err as NvsError).message).toMatch(message);
    return;
  }
  throw new Error(`expected NvsError ${code}`);
}

describe("NVS image from ESP-IDF mass-manufacturing CSV", () => {
  it("reproduces nvs_partition_gen.py's provisioning-record.bin byte for byte", () => {
    const image = imageFromCsv(FIXTURES, "provisioning-record.csv", 0x6000);
    expect(Buffer.from(image).equals(readFileSync(join(FIXTURES, "provisioning-record.bin")))).toBe(true);
  });

  for (const name of ["multipage-blob", "two-namespaces", "long-strings", "page-tail-blob"]) {
    it(`reproduces the generator's ${name} image and decodes it back exactly`, () => {
      const items = csvToItems(readFileSync(join(GENERATED, `${name}.csv`), "utf8"), (p) =>
        readFileSync(join(GENERATED, p)),
      );
      const image = buildNvsImage(items, 0x6000);
      expect(Buffer.from(image).equals(readFileSync(join(GENERATED, `${name}.nvs.bin`)))).toBe(true);
      const decoded = readNvsImage(image);
      expect(decoded.problems).toEqual([]);
      expect(decoded.hasSparePage).toBe(true);
      expect(decoded.namespaces).toEqual(expected(items));
    });
  }

  it("spreads a 10000-byte blob over three pages and puts its index after the last chunk", () => {
    const decoded = readNvsImage(imageFromCsv(GENERATED, "multipage-blob.csv", 0x6000));
    expect(decoded.pages.map((p) => p.state)).toEqual(["full", "full", "full", "active", "empty", "empty"]);
    expect(decoded.namespaces.get("prov")?.get("big")?.value).toEqual(
      new Uint8Array(readFileSync(join(GENERATED, "blob-10000.bin"))),
    );
  });

  it("refuses data that does not fit, as the generator does, with the spare page kept", () => {
    expectNvsError(
      () => imageFromCsv(GENERATED, "full-partition.csv", 0x3000),
      "partition_full",
      /partition full at "big".*spare page/,
    );
    // The same data fits once the partition has room, and the last page still stays erased.
    const image = imageFromCsv(GENERATED, "full-partition.csv", 0x5000);
    expect(image.subarray(image.length - PAGE_SIZE).every((b) => b === 0xff)).toBe(true);
    expect(readNvsImage(image).namespaces.get("prov")?.get("big")).toEqual({
      type: "blob",
      value: new Uint8Array(readFileSync(join(GENERATED, "blob-10000.bin"))),
    });
  });

  it("stores a 3999-byte string (the NVS maximum) and rejects 4000 bytes", () => {
    const s = "q".repeat(3999);
    const items: NvsWriteItem[] = [
      { kind: "namespace", name: "prov" },
      { kind: "u8", key: "a", value: 1 },
      { kind: "string", key: "max", value: s },
    ];
    const decoded = readNvsImage(buildNvsImage(items, 0x4000));
    expect(decoded.problems).toEqual([]);
    expect(decoded.namespaces).toEqual(expected(items));
    expect(decoded.pages[1]?.usedEntries).toBe(126);
    expectNvsError(
      () =>
        buildNvsImage(
          [
            { kind: "namespace", name: "p" },
            { kind: "string", key: "k", value: `${s}é` },
          ],
          0x4000,
        ),
      "string_too_long",
      /"k" is 4001 bytes; NVS stores at most 3999/,
    );
  });

  it("rejects keys and namespaces over 15 characters, data before a namespace and bad numbers", () => {
    expectNvsError(
      () =>
        buildNvsImage(
          [
            { kind: "namespace", name: "p" },
            { kind: "u8", key: "a_key_of_16_char", value: 1 },
          ],
          0x3000,
        ),
      "key_too_long",
      /"a_key_of_16_char" is 16 characters; NVS allows at most 15/,
    );
    expectNvsError(
      () => buildNvsImage([{ kind: "namespace", name: "namespace_16_chr" }], 0x3000),
      "key_too_long",
      /namespace/,
    );
    expectNvsError(
      () => buildNvsImage([{ kind: "i32", key: "k", value: 1 }], 0x3000),
      "no_namespace",
      /before any namespace/,
    );
    expectNvsError(
      () =>
        buildNvsImage(
          [
            { kind: "namespace", name: "p" },
            { kind: "i32", key: "k", value: 2 ** 31 },
          ],
          0x3000,
        ),
      "bad_value",
      /i32 "k"/,
    );
    expectNvsError(() => buildNvsImage([], 0x2000), "bad_size", /below 0x3000/);
    expectNvsError(() => buildNvsImage([], 0x3800), "bad_size", /multiple of 0x1000/);
  });

  it("gives clear CSV errors: unreadable type, long key, reopened namespace, missing file", () => {
    const noFile = (): Uint8Array => {
      throw new Error("ENOENT");
    };
    expectNvsError(
      () => csvToItems("key,type,encoding,value\np,namespace,,\nk,data,u16,5\n", noFile),
      "csv",
      /line 3: encoding u16 .* undefined/,
    );
    expectNvsError(
      () => csvToItems("key,type,encoding,value\np,namespace,,\nkey_longer_than_15,data,u8,5\n", noFile),
      "key_too_long",
      /CSV line 3/,
    );
    expectNvsError(
      () => csvToItems("key,type,encoding,value\na,namespace,,\nb,namespace,,\na,namespace,,\n", noFile),
      "csv",
      /line 4: namespace "a" reopened/,
    );
    expectNvsError(
      () => csvToItems("key,type,encoding,value\np,namespace,,\nk,file,binary,nope.bin\n", noFile),
      "csv",
      /cannot read file "nope.bin"/,
    );
    expectNvsError(
      () => csvToItems("key,type,encoding,value\np,namespace,,\nk,data,hex2bin,abc\n", noFile),
      "bad_value",
      /hex digits/,
    );
  });

  it("places keys of a namespace named again by the API in that namespace", () => {
    const items: NvsWriteItem[] = [
      { kind: "namespace", name: "a" },
      { kind: "u8", key: "x", value: 1 },
      { kind: "namespace", name: "b" },
      { kind: "u8", key: "y", value: 2 },
      { kind: "namespace", name: "a" },
      { kind: "string", key: "z", value: "back in a" },
    ];
    expect(readNvsImage(buildNvsImage(items, 0x3000)).namespaces).toEqual(expected(items));
  });

  it("reports a damaged blob chunk instead of returning wrong bytes", () => {
    const image = imageFromCsv(FIXTURES, "provisioning-record.csv", 0x6000);
    image[0x1c0] = image[0x1c0]! ^ 0x01; // inside ca_der's data
    const decoded = readNvsImage(image);
    expect(decoded.problems.some((p) => /ca_der.*data CRC mismatch/.test(p))).toBe(true);
    expect(decoded.namespaces.get("prov")?.has("ca_der")).toBe(false);
    expect(decoded.namespaces.get("prov")?.get("device_id")).toEqual({
      type: "string",
      value: "elx-site1-0001",
    });
  });

  it("round-trips arbitrary u8/i32/string/blob data or fails with partition_full", () => {
    const key = fc.stringMatching(/^[a-z][a-z0-9_]{0,14}$/);
    const item: fc.Arbitrary<NvsWriteItem> = fc.oneof(
      fc.record({ kind: fc.constant("u8" as const), key, value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({
        kind: fc.constant("i32" as const),
        key,
        value: fc.integer({ min: -0x80000000, max: 0x7fffffff }),
      }),
      fc.record({
        kind: fc.constant("string" as const),
        key,
        value: fc
          .string({ maxLength: 1500, unit: "binary" })
          .filter((s) => !s.includes("\0") && Buffer.byteLength(s) < 4000),
      }),
      fc.record({ kind: fc.constant("blob" as const), key, value: fc.uint8Array({ maxLength: 9000 }) }),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom("ns1", "ns2"), item), { maxLength: 25 }), (pairs) => {
        // One value per key and namespace, namespaces kept together: what a real identity looks like.
        const byNs = new Map<string, Map<string, NvsWriteItem>>();
        for (const [ns, it] of pairs) {
          if (it.kind === "namespace") continue;
          if (!byNs.has(ns)) byNs.set(ns, new Map());
          byNs.get(ns)!.set(it.key, it);
        }
        const items: NvsWriteItem[] = [...byNs].flatMap(([name, m]) => [
          { kind: "namespace", name } as NvsWriteItem,
          ...m.values(),
        ]);
        let image: Uint8Array;
        try {
          image = buildNvsImage(items, 0x8000);
        } catch (err) {
          expect((err as NvsError).code).toBe("partition_full");
          return;
        }
        const decoded = readNvsImage(image);
        expect(decoded.problems).toEqual([]);
        expect(decoded.hasSparePage).toBe(true);
        expect(decoded.namespaces).toEqual(expected(items));
      }),
      { numRuns: 150 },
    );
  });
});
