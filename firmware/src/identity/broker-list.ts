// The list of brokers a board may connect to, as provisioned into NVS (key `brokers`) and given to the
// emulator: `host:port,host:port`. Pure: runs under XS.

/** One broker endpoint. */
export interface BrokerAddress {
  host: string;
  port: number;
}

/** At most this many brokers in a list: a cluster has a handful of nodes. */
export const MAX_BROKERS = 16;

/**
 * Parses `host:port,host:port` (IPv6 as `[::1]:8883`), the form of the NVS key `brokers` and of the
 * emulator's list. Returns the brokers or the first problem.
 */
export function parseBrokerList(
  text: string,
): { ok: true; brokers: BrokerAddress[] } | { ok: false; problem: string } {
  const parts = text.split(",").map((p) => p.trim());
  if (parts.length === 1 && parts[0] === "") return { ok: true, brokers: [] };
  if (parts.length > MAX_BROKERS) return { ok: false, problem: `more than ${MAX_BROKERS} brokers` };
  const brokers: BrokerAddress[] = [];
  for (const part of parts) {
    const m = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/.exec(part);
    const port = m ? Number(m[2]) : NaN;
    if (!m || m[1] === undefined || !(port >= 1 && port <= 65535))
      return { ok: false, problem: `"${part}" is not host:port` };
    if (brokers.some((b) => b.host === m[1] && b.port === port))
      return { ok: false, problem: `${part} is listed twice` };
    brokers.push({ host: m[1], port });
  }
  return { ok: true, brokers };
}

export function formatBrokerList(brokers: readonly BrokerAddress[]): string {
  return brokers.map((b) => `${b.host}:${b.port}`).join(",");
}
