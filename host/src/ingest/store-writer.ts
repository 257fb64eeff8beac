// Writes one batch of line protocol and reports exactly whether the store accepted it.
// @influxdata/influxdb-client buffers, auto-flushes (dropping the promise) and retries from its
// own buffer; any of that could let the ingest acknowledge a message the store never took.
// So: one WriteApi per batch, no timer flush, no internal retries, a batch never larger than
// its buffer; the ingest owns the retries and the acknowledgements.
import { HttpError, InfluxDB, setLogger } from "@influxdata/influxdb-client";

export interface BatchStore {
  /** Resolves when the store answered 2xx for every line; rejects otherwise. */
  write(lines: readonly string[]): Promise<void>;
}

export interface InfluxStoreOptions {
  url: string;
  org: string;
  bucket: string;
  /** VictoriaMetrics ignores it; InfluxDB 2 needs a write token. Never logged. */
  token?: string;
  timeoutMs?: number;
  /** Bodies larger than this are gzipped (default: never; worth it only over a slow link). */
  gzipThreshold?: number;
}

/** A rejection the store will repeat for the same lines, whatever the ingest does. */
export class StoreRejectedError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** Bad line protocol (400), a batch too large (413), unprocessable (422). */
const CONTENT_REJECTED = new Set([400, 413, 422]);

let quietLogger = false;
function quietClientLogger(): void {
  if (quietLogger) return;
  quietLogger = true;
  // The client logs each failed write to the console; the ingest reports outages itself.
  setLogger({ error: () => undefined, warn: () => undefined });
}

export function influxStore(o: InfluxStoreOptions): BatchStore {
  quietClientLogger();
  const influx = new InfluxDB({ url: o.url, token: o.token, timeout: o.timeoutMs ?? 10_000 });
  return {
    async write(lines) {
      if (lines.length === 0) return;
      const api = influx.getWriteApi(o.org, o.bucket, "ms", {
        batchSize: lines.length + 1,
        maxBatchBytes: 256 * 1024 * 1024,
        flushInterval: 0,
        maxRetries: 0,
        maxBufferLines: 1,
        gzipThreshold: o.gzipThreshold ?? Number.MAX_SAFE_INTEGER,
      });
      api.writeRecords(lines as string[]);
      try {
        await api.flush();
      } catch (err) {
        // Only a complaint about the content is permanent. 401/403/404 (token, bucket) are
        // configuration the operator fixes while the broker keeps the backlog.
        if (err instanceof HttpError && CONTENT_REJECTED.has(err.statusCode))
          throw new StoreRejectedError(
            err.statusCode,
            `store refused the batch: HTTP ${err.statusCode} ${err.body?.slice(0, 200) ?? ""}`,
          );
        throw err;
      } finally {
        api.dispose();
      }
    },
  };
}

/** A line the store refused outright, by its index in the batch, with the store's answer. */
export interface RefusedLine {
  index: number;
  detail: string;
}

/**
 * Writes a batch; when the store refuses it outright, halves it until each refused line stands
 * alone, so one bad line among n costs about 2·log2(n) more requests instead of n. Returns the
 * refused lines (the rest were accepted); any other failure (store down) is thrown, and the caller
 * retries the whole batch, which the store's one-point-per-timestamp rule makes harmless.
 */
export async function writeIsolatingRefused(
  store: BatchStore,
  lines: readonly string[],
): Promise<RefusedLine[]> {
  const refused: RefusedLine[] = [];
  const attempt = async (from: number, to: number): Promise<void> => {
    try {
      await store.write(lines.slice(from, to));
    } catch (err) {
      if (!(err instanceof StoreRejectedError)) throw err;
      if (to - from === 1) {
        refused.push({ index: from, detail: err.message });
        return;
      }
      const mid = from + Math.ceil((to - from) / 2);
      await attempt(from, mid);
      await attempt(mid, to);
    }
  };
  if (lines.length > 0) await attempt(0, lines.length);
  return refused;
}
