/**
 * Who is connected to a node, from its own monitoring port (`/connz`): the judge of where boards are, e.g. the
 * failover time after a node dies (every board of that node on another one).
 */

/** MQTT clients on the node whose monitoring port is `httpPort` with a client id starting with `prefix`; 0 if it does not answer. */
export async function mqttClientsOn(httpPort: number, prefix: string, host = "127.0.0.1"): Promise<number> {
  try {
    const res = await fetch(`http://${host}:${httpPort}/connz?limit=100000`, {
      signal: AbortSignal.timeout(2000),
    });
    const body = (await res.json()) as { connections?: { mqtt_client?: string }[] };
    return (body.connections ?? []).filter((c) => c.mqtt_client?.startsWith(prefix)).length;
  } catch {
    return 0;
  }
}
