// A flooding board in its own process (so its publishing does not share the ingest's event loop):
// connects with one device's certificate and publishes sealed (or plain) readings at QoS 1 at
// `rate` messages/s (0: as fast as the broker acknowledges, up to `window` in flight) until
// SIGTERM, then prints {"sent":N} on stdout. Started by the containment test.
//   node --import tsx flood-board.ts <json options>
import { TestFleet } from "../../../testkit/ingest/fleet-publisher";

interface FloodOptions {
  brokerUrl: string;
  id: string;
  ca: string;
  cert: string;
  key: string;
  /** Hex of the fleet payload secret; plain JSON when absent. */
  masterHex?: string;
  keyId: number;
  rate: number;
  window: number;
}

const o = JSON.parse(process.argv[2] ?? "{}") as FloodOptions;
const fleet = await TestFleet.connect({
  brokerUrl: o.brokerUrl,
  ids: [o.id],
  credentials: { ca: o.ca, device: () => ({ cert: o.cert, key: o.key }) },
  encryption: o.masterHex
    ? { keyId: o.keyId, master: new Uint8Array(Buffer.from(o.masterHex, "hex")) }
    : undefined,
});
const board = fleet.boards[0]!;
let sent = 0;
let inFlight = 0;
let stopping = false;
const started = Date.now();
process.stdout.write(JSON.stringify({ ready: true }) + "\n");

await new Promise<void>((resolve) => {
  const pump = () => {
    if (stopping) return;
    // Paced: the number due by now; unpaced: keep the window full.
    const due = o.rate > 0 ? Math.floor(((Date.now() - started) * o.rate) / 1000) : Infinity;
    while (!stopping && inFlight < o.window && sent < due) {
      const m = board.nextMessage();
      inFlight++;
      sent++;
      board.publishRaw(m.topic, m.payload).then(
        () => {
          inFlight--;
          if (o.rate === 0) pump();
        },
        () => {
          inFlight--;
        },
      );
    }
  };
  const timer = setInterval(pump, 5);
  process.once("SIGTERM", () => {
    stopping = true;
    clearInterval(timer);
    resolve();
  });
  pump();
});
await fleet.end();
process.stdout.write(JSON.stringify({ sent, ms: Date.now() - started }) + "\n");
