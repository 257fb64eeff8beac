// The store's retention, one value for both stores and the ingest: docker-compose passes
// ${INFLUXDB_RETENTION} to InfluxDB (DOCKER_INFLUXDB_INIT_RETENTION), to VictoriaMetrics
// (-retentionPeriod) and to the ingest (--retention), and `npm run stack` passes its --retention
// to VictoriaMetrics and the ingest. Only the units both stores read are accepted: h, d, w.

const UNIT_MS = { h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 } as const;
const HOUR_MS = UNIT_MS.h;

/** "30d" → milliseconds; throws with a clear message on anything both stores would not read alike. */
export function parseRetention(text: string): number {
  const m = /^([1-9]\d{0,5})([hdw])$/.exec(text.trim());
  if (!m)
    throw new Error(
      `retention "${text}" is not <n>h, <n>d or <n>w (e.g. 30d), the units InfluxDB and VictoriaMetrics share`,
    );
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/**
 * The oldest reading the ingest accepts: the retention less a margin (a tenth, at most an hour), so a
 * reading accepted now is still inside the retention while its batch waits out a store outage. An
 * older reading would be refused by InfluxDB (422) or silently dropped by VictoriaMetrics.
 */
export function maxReadingAgeMs(retentionMs: number): number {
  return retentionMs - Math.min(HOUR_MS, retentionMs / 10);
}
