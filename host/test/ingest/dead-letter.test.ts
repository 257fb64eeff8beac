import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deadLetterFile, type DeadLetter } from "../../src/ingest/dead-letter";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-dead-letter-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const letter = (sensor: string, reason: string, i: number): DeadLetter => ({
  time: new Date(1_800_000_000_000 + i).toISOString(),
  reason,
  detail: `message ${i}`,
  topic: `electrolyser/${sensor}/telemetry`,
  sensor_id: sensor,
  payload_b64: Buffer.alloc(180, i % 256).toString("base64"),
});

async function linesOf(path: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("the dead-letter file under a flood", () => {
  it("keeps the first records of every (device, reason) and counts the rest, so a flood cannot rotate evidence out", async () => {
    const path = join(dir, "dead-letter.jsonl");
    const sink = deadLetterFile(path, 200_000, 50);
    // Board B's refusals come first: the evidence an operator needs.
    await sink.append([
      letter("el-b", "tag_mismatch", 0),
      letter("el-b", "replay", 1),
      letter("el-b", "replay", 2),
    ]);
    // Board A floods: 5,000 refusals (about 1.4 MB in full) in batches of 100, as the ingest appends them.
    for (let batch = 0; batch < 50; batch++)
      await sink.append(
        Array.from({ length: 100 }, (_, i) => letter("el-a", "tag_mismatch", 3 + batch * 100 + i)),
      );
    await sink.append([letter("el-b", "replay", 9999)]);

    const all = [...(await linesOf(`${path}.1`)), ...(await linesOf(path))];
    // Before: the file rotated seven times and board B's first three records were gone.
    expect(all.filter((l) => l.sensor_id === "el-b" && "payload_b64" in l).map((l) => l.detail)).toEqual([
      "message 0",
      "message 1",
      "message 2",
      "message 9999",
    ]);
    expect(all.filter((l) => l.sensor_id === "el-a" && "payload_b64" in l)).toHaveLength(50);
    const summaries = all.filter((l) => "suppressed" in l);
    expect(summaries.at(-1)).toMatchObject({
      sensor_id: "el-a",
      reason: "tag_mismatch",
      suppressed: 4950,
      kept: 50,
    });
    // Bounded: one summary line per batch that suppressed something.
    expect(summaries).toHaveLength(50);
  });
});
