/**
 * ESP-IDF's mass-manufacturing CSV (`key,type,encoding,value`; type namespace | data | file) turned into the
 * items the image writer takes, read the way nvs_partition_gen.py reads it: lines starting with `#` dropped,
 * Python csv quoting, values taken verbatim, `int()` for numbers, `file` paths read as bytes.
 */
import { NvsError } from "./format";
import type { NvsWriteItem } from "./writer";
import { checkKeyName } from "./writer";

/** Encodings whose values Moddable's `Preference` can read back. */
const SUPPORTED = new Set(["u8", "i32", "string", "binary", "hex2bin", "base64"]);
const READ_AS_UNDEFINED = new Set(["i8", "u16", "i16", "u32", "u64", "i64"]);
/** The generator adds hidden Wi-Fi entries for these keys; we would not reproduce its bytes, so refuse them. */
const GENERATOR_SPECIAL_KEYS = new Set(["ap.ssid", "ap.passwd", "ap.authmode", "sta.ssid", "sta.pswd"]);

export interface CsvRow {
  line: number;
  key: string;
  type: string;
  encoding: string;
  value: string;
}

/** `readFile` resolves a `file` row's path (relative paths as the caller decides) to its bytes. */
export function csvToItems(text: string, readFile: (path: string) => Uint8Array): NvsWriteItem[] {
  const seen: string[] = [];
  return parseNvsCsv(text).map((row) => {
    const item = rowToItem(row, readFile);
    if (item.kind === "namespace") {
      // nvs_partition_gen.py keeps writing into the most recently *created* namespace when an earlier one is
      // named again, so its keys would silently land elsewhere. Refuse instead of copying that.
      const latest = seen[seen.length - 1];
      if (seen.includes(item.name) && item.name !== latest) {
        throw new NvsError(
          "csv",
          `CSV line ${row.line}: namespace "${item.name}" reopened after "${latest}"; ` +
            `nvs_partition_gen.py would store the following keys in "${latest}". Group each namespace's keys together`,
        );
      }
      if (!seen.includes(item.name)) seen.push(item.name);
    }
    return item;
  });
}

export function parseNvsCsv(text: string): CsvRow[] {
  // The generator filters physical lines beginning with '#' before the csv module sees them.
  const physical = text.split(/(?<=\n)/);
  const kept: { text: string; line: number }[] = [];
  physical.forEach((l, i) => {
    if (!l.startsWith("#")) kept.push({ text: l, line: i + 1 });
  });
  const records = parseCsvRecords(kept);
  const header = records.shift();
  if (!header) throw new NvsError("csv", "CSV is empty: expected a header key,type,encoding,value");
  const col = (name: string): number => {
    const i = header.fields.indexOf(name);
    if (i < 0)
      throw new NvsError(
        "csv",
        `CSV header lacks column "${name}" (line ${header.line}): expected key,type,encoding,value`,
      );
    return i;
  };
  const [k, t, e, v] = [col("key"), col("type"), col("encoding"), col("value")];
  return records
    .filter((r) => r.fields.length > 0)
    .map((r) => ({
      line: r.line,
      key: r.fields[k] ?? "",
      type: r.fields[t] ?? "",
      encoding: r.fields[e] ?? "",
      value: r.fields[v] ?? "",
    }));
}

function rowToItem(row: CsvRow, readFile: (path: string) => Uint8Array): NvsWriteItem {
  const where = `CSV line ${row.line}`;
  try {
    checkKeyName(row.key, row.type === "namespace" ? "namespace" : "key");
  } catch (err) {
    if (err instanceof NvsError) throw new NvsError(err.code, `${where}: ${err.message}`);
    throw err;
  }
  if (row.type === "namespace") return { kind: "namespace", name: row.key };
  if (row.type !== "data" && row.type !== "file") {
    throw new NvsError("csv", `${where}: type "${row.type}" is not namespace, data or file`);
  }
  if (GENERATOR_SPECIAL_KEYS.has(row.key)) {
    throw new NvsError(
      "csv",
      `${where}: key "${row.key}" makes nvs_partition_gen.py add hidden Wi-Fi entries; not supported`,
    );
  }
  const enc = row.encoding.toLowerCase();
  if (READ_AS_UNDEFINED.has(enc)) {
    throw new NvsError(
      "csv",
      `${where}: encoding ${enc} of "${row.key}" reads back as undefined in Moddable's Preference; use u8, i32, string or a blob`,
    );
  }
  if (!SUPPORTED.has(enc)) {
    throw new NvsError(
      "csv",
      `${where}: unsupported encoding "${row.encoding}" for "${row.key}" (u8, i32, string, binary, hex2bin, base64)`,
    );
  }
  let raw: Uint8Array | undefined;
  if (row.type === "file") {
    try {
      raw = readFile(row.value);
    } catch (err) {
      throw new NvsError(
        "csv",
        `${where}: cannot read file "${row.value}" for "${row.key}": ${(err as Error).message}`,
      );
    }
  }
  const asText = (): string => (raw ? Buffer.from(raw).toString("utf8") : row.value);
  switch (enc) {
    case "u8":
    case "i32": {
      const n = pythonInt(asText());
      if (n === undefined) throw new NvsError("bad_value", `${where}: "${row.key}" is not an integer`);
      return enc === "u8" ? { kind: "u8", key: row.key, value: n } : { kind: "i32", key: row.key, value: n };
    }
    case "string":
      return { kind: "string", key: row.key, value: asText() };
    case "binary":
      return { kind: "blob", key: row.key, value: raw ?? Buffer.from(row.value, "utf8") };
    case "hex2bin": {
      const hex = asText().trim();
      if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
        throw new NvsError("bad_value", `${where}: "${row.key}" is not an even number of hex digits`);
      }
      return { kind: "blob", key: row.key, value: Buffer.from(hex, "hex") };
    }
    default:
      return { kind: "blob", key: row.key, value: Buffer.from(asText(), "base64") };
  }
}

/** Python's int(str): optional sign, decimal digits, single underscores between digits, surrounding whitespace. */
function pythonInt(s: string): number | undefined {
  const m = /^\s*([+-]?)(\d+(?:_\d+)*)\s*$/.exec(s);
  if (!m || m[2] === undefined) return undefined;
  const n = Number((m[1] === "-" ? "-" : "") + m[2].replaceAll("_", ""));
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Python csv "excel" dialect: comma, double quotes with "" escapes, quoted fields may span lines. */
function parseCsvRecords(lines: { text: string; line: number }[]): { fields: string[]; line: number }[] {
  const out: { fields: string[]; line: number }[] = [];
  let fields: string[] = [];
  let field = "";
  let inQuotes = false;
  let started = false;
  let startLine = 0;
  for (const { text, line } of lines) {
    if (!started) startLine = line;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (inQuotes) {
        if (c === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i++;
          } else inQuotes = false;
        } else field += c;
        continue;
      }
      if (c === '"' && field === "") {
        inQuotes = true;
        started = true;
      } else if (c === ",") {
        fields.push(field);
        field = "";
        started = true;
      } else if (c === "\r" || c === "\n") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        if (started || field !== "") fields.push(field);
        out.push({ fields, line: startLine });
        fields = [];
        field = "";
        started = false;
      } else {
        field += c;
        started = true;
      }
    }
  }
  if (inQuotes) throw new NvsError("csv", `CSV line ${startLine}: unterminated quoted field`);
  if (started || field !== "") {
    fields.push(field);
    out.push({ fields, line: startLine });
  }
  return out;
}
