// What Grafana does to a query before sending it: template variables become their values.
// Tests use "All" for every dashboard variable (`.*`, the variables' allValue).

export interface GrafanaVars {
  intervalS: number;
  rateIntervalS: number;
  rangeS: number;
}

export function interpolatePromQL(text: string, v: GrafanaVars): string {
  return text
    .replaceAll("$__rate_interval", `${v.rateIntervalS}s`)
    .replaceAll("$__interval_ms", String(v.intervalS * 1000))
    .replaceAll("$__interval", `${v.intervalS}s`)
    .replaceAll("$__range", `${v.rangeS}s`)
    .replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, ".*");
}

/** Grafana passes v.timeRangeStart/Stop/windowPeriod as an extern `option v = {...}` block. */
export const FLUX_EXTERN_V =
  "option v = {timeRangeStart: 2026-01-01T00:00:00Z, timeRangeStop: 2026-01-01T01:00:00Z, windowPeriod: 10s}";

export function interpolateFlux(text: string): string {
  const body = text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*):regex\}/g, ".*");
  // The extern block goes after the imports, where an option statement may stand.
  const lines = body.split("\n");
  let i = 0;
  while (i < lines.length && (/^import\s/.test(lines[i] ?? "") || (lines[i] ?? "").trim() === "")) i++;
  return [...lines.slice(0, i), FLUX_EXTERN_V, ...lines.slice(i)].join("\n");
}
