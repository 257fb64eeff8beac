// Writes the broker's connection counts (host/src/broker/connection-log.ts) to the store, cumulative since
// the launcher started, for the Fleet Security dashboard: measurement `broker_connections` (tag
// client_id: connects, lost, refused) and `broker_refused` (tag reason: count).
import type { BrokerConnectionLog } from "../broker/connection-log";
import { escapeTag } from "../ingest/line-protocol";

export const BROKER_CONNECTIONS_MEASUREMENT = "broker_connections";
export const BROKER_REFUSED_MEASUREMENT = "broker_refused";

export function brokerConnectionLines(log: BrokerConnectionLog, tsMs: number): string[] {
  const lines: string[] = [];
  for (const [id, c] of log.identities()) {
    // A CN with a control character cannot be a tag; Mosquitto would not log one on one line anyway.
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(id)) continue;
    lines.push(
      `${BROKER_CONNECTIONS_MEASUREMENT},client_id=${escapeTag(id)} connects=${c.connects}i,lost=${c.lost}i,refused=${c.refused}i ${tsMs}`,
    );
  }
  for (const [reason, n] of log.refused())
    lines.push(`${BROKER_REFUSED_MEASUREMENT},reason=${reason} count=${n}i ${tsMs}`);
  return lines;
}

export interface BrokerConnectionsTarget {
  storeUrl: string;
  org?: string;
  bucket?: string;
  token?: string;
}

export async function writeBrokerConnections(
  t: BrokerConnectionsTarget,
  log: BrokerConnectionLog,
  now = Date.now(),
): Promise<number> {
  const lines = brokerConnectionLines(log, now);
  if (lines.length === 0) return 0;
  const q = new URLSearchParams({
    precision: "ms",
    org: t.org ?? "electrolyser",
    bucket: t.bucket ?? "telemetry",
  });
  const res = await fetch(`${t.storeUrl}/api/v2/write?${q.toString()}`, {
    method: "POST",
    body: lines.join("\n"),
    headers: t.token ? { Authorization: `Token ${t.token}` } : {},
  });
  if (!res.ok)
    throw new Error(`store refused the broker connection points: HTTP ${res.status} ${await res.text()}`);
  return lines.length;
}

/** Writes every `everyMs` (default 10 s); a failed write is logged and the counts go out next time. */
export function startBrokerConnectionsExporter(
  t: BrokerConnectionsTarget & { log: (line: string) => void; everyMs?: number },
  counts: BrokerConnectionLog,
): { stop(): void; flush(): Promise<number> } {
  let failures = 0;
  const once = (): void =>
    void writeBrokerConnections(t, counts).catch((err: unknown) => {
      failures += 1;
      if (failures === 1 || failures % 30 === 0)
        t.log(
          `broker connection export failed (${failures}): ${err instanceof Error ? err.message : String(err)}`,
        );
    });
  const timer = setInterval(once, t.everyMs ?? 10_000);
  timer.unref();
  return { stop: () => clearInterval(timer), flush: () => writeBrokerConnections(t, counts) };
}
