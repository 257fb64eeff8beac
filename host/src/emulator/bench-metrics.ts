/**
 * The emulator's own figures written to the store as measurement `bench` (tags run, component=emulator),
 * InfluxDB v2 line protocol over HTTP, which both InfluxDB 2 and VictoriaMetrics accept: the Benchmark
 * dashboard reads them next to the ingest's figures.
 */
export interface StoreTarget {
  /** Base URL, e.g. http://127.0.0.1:8428 (VictoriaMetrics) or http://127.0.0.1:8086 (InfluxDB 2). */
  url: string;
  org?: string;
  bucket?: string;
  /** InfluxDB API token; never logged. */
  token?: string;
}

const escapeTag = (v: string): string => v.replace(/[,= \\]/g, (c) => `\\${c}`);

export function benchLine(run: string, fields: Readonly<Record<string, number>>, tsMs: number): string {
  const parts = Object.entries(fields)
    .filter(([, v]) => Number.isFinite(v))
    .map(([k, v]) => `${k}=${v}`);
  if (parts.length === 0) throw new Error("a bench point needs at least one finite field");
  return `bench,component=emulator,run=${escapeTag(run)} ${parts.join(",")} ${Math.round(tsMs)}`;
}

export async function writeLines(target: StoreTarget, lines: readonly string[]): Promise<void> {
  const params = new URLSearchParams({ precision: "ms" });
  if (target.org) params.set("org", target.org);
  if (target.bucket) params.set("bucket", target.bucket);
  const res = await fetch(`${target.url.replace(/\/$/, "")}/api/v2/write?${params}`, {
    method: "POST",
    headers: {
      "content-type": "text/plain; charset=utf-8",
      ...(target.token ? { authorization: `Token ${target.token}` } : {}),
    },
    body: lines.join("\n") + "\n",
    signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) throw new Error(`store write failed: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
}
