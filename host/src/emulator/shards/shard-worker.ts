/**
 * A worker thread running one shard of the fleet: the same Fleet class as a single-threaded run, driven by
 * messages from the main thread, posting its figures (counters, latency samples, faults) a few times a second.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Fleet } from "../fleet";
import type { FromShard, ShardSetup, ToShard } from "./protocol";

const setup = workerData as ShardSetup;
const port = parentPort!;
const post = (m: FromShard): void => port.postMessage(m);

const fleet = new Fleet({
  ...setup.fleet,
  shard: setup.shard,
  device: (id) => {
    const f = setup.files[id];
    if (!f) throw new Error(`no identity files for ${id} in shard ${setup.shard.index}`);
    return f;
  },
});

let reported = 0;
let reporter: NodeJS.Timeout | undefined;
function report(): void {
  const faults = fleet.faultLog.slice(reported);
  reported = fleet.faultLog.length;
  post({
    type: "report",
    stats: fleet.stats.takeSnapshot(),
    pending: fleet.pendingMessages(),
    allConnectedAtS: fleet.allConnectedAtS,
    faults,
  });
}

async function handle(m: ToShard): Promise<void> {
  switch (m.type) {
    case "start":
      fleet.start(m.startWallMs);
      reporter = setInterval(report, setup.reportEveryMs);
      return;
    case "steady":
      fleet.markSteady();
      return;
    case "stopSampling":
      await fleet.stopSampling();
      report();
      post({ type: "stopped" });
      return;
    case "drain": {
      const pending = await fleet.drain(m.timeoutMs);
      report();
      post({ type: "drained", pending });
      return;
    }
    case "counts":
      post({ type: "counts", devices: await fleet.deviceCounts() });
      return;
    case "shutdown":
      if (reporter) clearInterval(reporter);
      await fleet.shutdown();
      report();
      post({ type: "down" });
      port.close();
      return;
  }
}

port.on("message", (m: ToShard) => {
  handle(m).catch((err: unknown) =>
    post({ type: "failed", message: err instanceof Error ? err.message : String(err) }),
  );
});

fleet
  .init((done, total) => post({ type: "loaded", done, total }))
  .then(() => post({ type: "ready" }))
  .catch((err: unknown) =>
    post({ type: "failed", message: err instanceof Error ? err.message : String(err) }),
  );
