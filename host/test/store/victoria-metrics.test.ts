import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  exportSeries,
  queryInstant,
  queryRange,
  startVictoriaMetrics,
  type VictoriaMetricsHandle,
} from "../../src/store/victoria-metrics";

const handles: VictoriaMetricsHandle[] = [];
const dirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "est-vm-"));
  dirs.push(dir);
  return dir;
}

afterAll(async () => {
  await Promise.all(handles.map((h) => h.stop()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function write(url: string, lines: string): Promise<void> {
  const res = await fetch(`${url}/api/v2/write?org=o&bucket=b&precision=ms`, { method: "POST", body: lines });
  expect(res.status).toBe(204);
}

async function waitFor<T>(read: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  while (!done(last) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    last = await read();
  }
  return last;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("startVictoriaMetrics", () => {
  it("accepts InfluxDB line protocol, keeps one sample per series and ms, survives a restart", async () => {
    const vm = await startVictoriaMetrics({ dataDir: join(await tempDir(), "vm") });
    handles.push(vm);
    expect(vm.url).toBe(`http://127.0.0.1:${vm.port}`);
    expect(pidAlive(vm.pid)).toBe(true);

    const ts = Date.now() - 1000;
    // The same point three times (as an at-least-once redelivery would write it) and one more point.
    for (let i = 0; i < 3; i++)
      await write(vm.url, `electrolyser,sensor_id=b1,site=s1 temperature_c=61.5,seq=1i ${ts}`);
    await write(vm.url, `electrolyser,sensor_id=b1,site=s1 temperature_c=62,seq=2i ${ts + 1}`);

    const seq = await waitFor(
      () => exportSeries(vm.url, 'electrolyser_seq{sensor_id="b1"}'),
      (s) => s.length === 1,
    );
    expect(seq).toHaveLength(1);
    expect(seq[0]?.metric).toEqual({ __name__: "electrolyser_seq", sensor_id: "b1", site: "s1" });
    expect(seq[0]?.values).toEqual([1, 2]);
    expect(seq[0]?.timestamps).toEqual([ts, ts + 1]);

    const count = await queryInstant(
      vm.url,
      'count_over_time(electrolyser_temperature_c{sensor_id="b1"}[5m])',
    );
    expect(count[0]?.value[1]).toBe("2");
    const range = await queryRange(vm.url, 'electrolyser_temperature_c{sensor_id="b1"}', {
      startMs: ts - 60_000,
      endMs: Date.now(),
      stepMs: 1000,
    });
    expect(range[0]?.values.at(-1)?.[1]).toBe("62");

    const oldPid = vm.pid;
    await vm.stop();
    expect(vm.pid).toBe(0);
    expect(pidAlive(oldPid)).toBe(false);
    await expect(fetch(`${vm.url}/health`)).rejects.toThrow();

    await vm.start();
    expect(vm.pid).not.toBe(oldPid);
    const after = await exportSeries(vm.url, 'electrolyser_seq{sensor_id="b1"}');
    expect(after[0]?.values).toEqual([1, 2]);
  });

  it("without dedup keeps every copy, which is how tests prove the ingest itself writes once", async () => {
    const vm = await startVictoriaMetrics({ dataDir: join(await tempDir(), "vm"), dedup: false });
    handles.push(vm);
    const ts = Date.now() - 1000;
    for (let i = 0; i < 2; i++) await write(vm.url, `electrolyser,sensor_id=b2,site=s1 seq=7i ${ts}`);
    const seq = await waitFor(
      () => exportSeries(vm.url, 'electrolyser_seq{sensor_id="b2"}'),
      (s) => (s[0]?.values.length ?? 0) >= 2,
    );
    expect(seq[0]?.values).toEqual([7, 7]);
  });

  it("drops points older than the retention period", async () => {
    const vm = await startVictoriaMetrics({ dataDir: join(await tempDir(), "vm"), retentionPeriod: "1d" });
    handles.push(vm);
    const now = Date.now();
    await write(
      vm.url,
      `electrolyser,sensor_id=b3,site=s1 seq=1i ${now - 3 * 86_400_000}\nelectrolyser,sensor_id=b3,site=s1 seq=2i ${now - 1000}`,
    );
    const seq = await waitFor(
      () => exportSeries(vm.url, 'electrolyser_seq{sensor_id="b3"}', { startMs: now - 10 * 86_400_000 }),
      (s) => s.length === 1,
    );
    expect(seq[0]?.values).toEqual([2]);
  });

  it("fails clearly when the port is taken by something else", async () => {
    const vm = await startVictoriaMetrics({ dataDir: join(await tempDir(), "vm") });
    handles.push(vm);
    await expect(
      startVictoriaMetrics({ dataDir: join(await tempDir(), "vm2"), port: vm.port, startTimeoutMs: 5000 }),
    ).rejects.toThrow(/port|exited|healthy/);
  });
});
