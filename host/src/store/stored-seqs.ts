/**
 * What the store holds of the fleet's telemetry, as (device → seq list), and how it compares with what was
 * published: the judge of "every reading stored exactly once" for the tests and the benchmarks.
 */
import { exportSeries } from "./victoria-metrics";

/** Every stored (sensor_id → seq list) of telemetry, read back from the store. */
export async function storedSeqs(vmUrl: string): Promise<Map<string, number[]>> {
  const series = await exportSeries(vmUrl, "electrolyser_seq", { startMs: Date.now() - 86_400_000 });
  const out = new Map<string, number[]>();
  for (const s of series) {
    const id = s.metric.sensor_id ?? "?";
    out.set(
      id,
      [...(out.get(id) ?? []), ...s.values].sort((a, b) => a - b),
    );
  }
  return out;
}

export function countAll(m: Map<string, number[]>): number {
  let n = 0;
  for (const v of m.values()) n += v.length;
  return n;
}

/**
 * Compares what was published with what is stored, as multisets of (device, seq): a reading
 * missing, stored twice, or stored without having been published is reported.
 */
export function diffStored(
  published: Map<string, number[]>,
  stored: Map<string, number[]>,
): { missing: string[]; extra: string[] } {
  const missing: string[] = [];
  const extra: string[] = [];
  for (const [id, seqs] of published) {
    const counts = new Map<number, number>();
    for (const s of stored.get(id) ?? []) counts.set(s, (counts.get(s) ?? 0) + 1);
    for (const s of seqs) {
      const c = counts.get(s) ?? 0;
      if (c === 0) missing.push(`${id}#${s}`);
      else counts.set(s, c - 1);
    }
    for (const [s, c] of counts) if (c > 0) extra.push(`${id}#${s}x${c}`);
  }
  for (const id of stored.keys()) if (!published.has(id)) extra.push(`${id}:*`);
  return { missing, extra };
}
