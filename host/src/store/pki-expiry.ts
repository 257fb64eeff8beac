// The expiry of every certificate in use and of both CRLs, written to the store every few minutes by
// `npm run stack` (measurement `pki_expiry`, field `days_left`; VictoriaMetrics: `pki_expiry_days_left`), so
// the Grafana rule est-pki-expiry fires 30 days ahead (infra/grafana/src/definitions/alerts.ts).
import { expiryRecords, type ExpiryRecord } from "../../../pki/src/expiry";
import { escapeTag } from "../ingest/line-protocol";

export const PKI_EXPIRY_MEASUREMENT = "pki_expiry";
const DAY_MS = 86_400_000;

export function pkiExpiryLines(records: readonly ExpiryRecord[], now: Date): string[] {
  return records.map((r) => {
    const daysLeft = Math.round(((r.expires.getTime() - now.getTime()) / DAY_MS) * 1000) / 1000;
    return `${PKI_EXPIRY_MEASUREMENT},kind=${escapeTag(r.kind)},name=${escapeTag(r.name)} days_left=${daysLeft},expires_at=${Math.floor(r.expires.getTime() / 1000)}i ${now.getTime()}`;
  });
}

export interface PkiExpiryTarget {
  stateDir: string;
  /** InfluxDB v2 or VictoriaMetrics base URL. */
  storeUrl: string;
  org?: string;
  bucket?: string;
  /** InfluxDB write token; VictoriaMetrics needs none. */
  token?: string;
}

export async function writePkiExpiry(t: PkiExpiryTarget, now = new Date()): Promise<number> {
  const lines = pkiExpiryLines(await expiryRecords(t.stateDir), now);
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
  if (!res.ok) throw new Error(`store refused the PKI expiry points: HTTP ${res.status} ${await res.text()}`);
  return lines.length;
}

/** Writes at once and then every `everyMs` (default 5 min); a failed write is logged and retried next time. */
export function startPkiExpiryExporter(
  t: PkiExpiryTarget & { everyMs?: number; log: (line: string) => void },
): { stop(): void } {
  let failures = 0;
  const once = (): void =>
    void writePkiExpiry(t).catch((err: unknown) => {
      failures += 1;
      t.log(`PKI expiry export failed (${failures}): ${err instanceof Error ? err.message : String(err)}`);
    });
  once();
  const timer = setInterval(once, t.everyMs ?? 300_000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
