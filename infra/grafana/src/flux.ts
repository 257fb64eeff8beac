// SeriesQuery → Flux for Grafana's InfluxDB datasource (query language Flux).
// Grafana provides v.timeRangeStart, v.timeRangeStop and v.windowPeriod, and interpolates
// ${variable:regex} before the query reaches InfluxDB.
import { legendTags, type Across, type Reducer, type SeriesQuery, type Window } from "./model";

const REDUCER_FN: Record<Reducer, string> = { mean: "mean", max: "max", min: "min", last: "last" };
const ACROSS_FN: Record<Across, string> = { sum: "sum", max: "max", min: "min", mean: "mean" };

export function fluxString(s: string): string {
  return JSON.stringify(s);
}

function floatLiteral(n: number): string {
  const text = String(n);
  return /[.eE]/.test(text) ? text : `${text}.0`;
}

/** Tags kept on the result, so series are named by what the legend shows. */
function keptTags(q: SeriesQuery): string[] {
  const tags = q.across ? [...(q.by ?? [])] : [...new Set([...legendTags(q.legend), ...(q.by ?? [])])];
  return tags;
}

function selection(q: SeriesQuery, bucket: string, range: string): string[] {
  return [
    `from(bucket: ${fluxString(bucket)})`,
    `  |> ${range}`,
    `  |> filter(fn: (r) => r._measurement == ${fluxString(q.measurement)} and r._field == ${fluxString(q.field)})`,
    ...(q.filters ?? []).map((f) => `  |> filter(fn: (r) => r.${f.tag} =~ /^\${${f.variable}:regex}$/)`),
  ];
}

/**
 * A value written only on change holds until the next point: the newest point before the window
 * is carried to the window's start, and every window takes the previous value when it has none.
 */
function stateLines(q: SeriesQuery, bucket: string, lookbackS: number): string[] {
  const indent = (ls: string[]) => ls.map((l, i) => (i === 0 ? l : `  ${l}`));
  return [
    `import "date"`,
    "",
    "before = " +
      indent([
        ...selection(
          q,
          bucket,
          `range(start: date.sub(d: ${lookbackS}s, from: v.timeRangeStart), stop: v.timeRangeStart)`,
        ),
        "  |> last()",
        "  |> map(fn: (r) => ({r with _time: v.timeRangeStart}))",
      ]).join("\n"),
    "during = " +
      indent(selection(q, bucket, "range(start: v.timeRangeStart, stop: v.timeRangeStop)")).join("\n"),
    "",
    "union(tables: [before, during])",
    `  |> group(columns: ["_start", "_stop", "_time", "_value"], mode: "except")`,
    "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)",
    `  |> sort(columns: ["_time"])`,
    `  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: true, timeSrc: "_start")`,
    "  |> fill(usePrevious: true)",
    "  |> filter(fn: (r) => exists r._value)",
  ];
}

export function toFlux(q: SeriesQuery, bucket: string, window: Window): string {
  const a = q.aggregation;
  const windowed = window.mode === "dashboard";
  const lines: string[] =
    a.kind === "state" && windowed
      ? stateLines(q, bucket, a.lookbackS)
      : selection(
          q,
          bucket,
          windowed
            ? "range(start: v.timeRangeStart, stop: v.timeRangeStop)"
            : `range(start: -${a.kind === "state" ? a.lookbackS : window.seconds}s)`,
        );
  const pipe = (step: string): void => void lines.push(`  |> ${step}`);

  const every = "v.windowPeriod";
  const aggregate = (fn: string): string =>
    windowed
      ? `aggregateWindow(every: ${every}, fn: ${fn}, createEmpty: false, timeSrc: "_start")`
      : `${fn}()`;
  const windowSeconds = windowed
    ? "(float(v: int(v: v.windowPeriod)) / 1000000000.0)"
    : floatLiteral(window.seconds);

  switch (a.kind) {
    case "state":
      // Windowed already (stateLines); a fixed window takes the value in force now.
      if (!windowed) pipe("last()");
      break;
    case "gauge":
      pipe(aggregate(REDUCER_FN[a.reducer]));
      break;
    case "rate":
      pipe("derivative(unit: 1s, nonNegative: true)");
      pipe(aggregate("mean"));
      break;
    case "increase":
      pipe("difference(nonNegative: true)");
      pipe(aggregate("sum"));
      break;
    case "arrivals":
      pipe(aggregate("count"));
      pipe(`map(fn: (r) => ({r with _value: float(v: r._value) / ${windowSeconds}}))`);
      break;
    case "age":
      pipe("last()");
      pipe("map(fn: (r) => ({r with _value: float(v: int(v: now()) - int(v: r._time)) / 1000000000.0}))");
      break;
  }

  if (q.divideBy !== undefined) {
    pipe(`map(fn: (r) => ({r with _value: float(v: r._value) / ${floatLiteral(q.divideBy)}}))`);
  }

  if (q.across) {
    pipe(`group(columns: [${(q.by ?? []).map(fluxString).join(", ")}])`);
    // Per-series windows all end on the same boundaries, so a second window of the same
    // period combines exactly one point of each series.
    pipe(windowed && a.kind !== "age" ? aggregate(ACROSS_FN[q.across]) : `${ACROSS_FN[q.across]}()`);
  }

  const columns = windowed && a.kind !== "age" ? ["_time", "_value"] : ["_value"];
  pipe(`keep(columns: [${[...columns, ...keptTags(q)].map(fluxString).join(", ")}])`);
  return lines.join("\n");
}
