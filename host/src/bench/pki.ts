// `npm run bench -- pki --count 1000`: seconds to issue N device identities (key, certificate, four
// files, database record) with RSA-2048 and P-256 keys, each run into a fresh temporary state folder
// that is removed afterwards. CPU seconds are printed too: on a shared machine they show what the
// work costs independently of what else is running.
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import yargs from "yargs";
import { createCa } from "../../../pki/src/ca";
import { issueDevices } from "../../../pki/src/identities";
import { generateDeviceIds } from "../../../manifests/src/device-id";
import { KEY_TYPES } from "../../../pki/src/keys";
import type { RsaKeygen } from "../../../pki/src/keygen";
import type { KeyType } from "../../../pki/src/paths";

interface Run {
  label: string;
  keyType: KeyType;
  rsaKeygen: RsaKeygen;
}

export async function run(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .scriptName("npm run bench -- pki")
    .option("count", { type: "number", default: 1000, describe: "device identities per run" })
    .option("key-type", {
      type: "string",
      choices: [...KEY_TYPES],
      array: true,
      default: [...KEY_TYPES],
      describe: "key types to measure",
    })
    .option("rsa-keygen", {
      type: "string",
      choices: ["workers", "openssl", "both"],
      default: "workers",
      describe: "RSA key generator: worker threads (default) or OpenSSL's generateKeyPair",
    })
    .option("keep", { type: "boolean", default: false, describe: "keep the state folders (printed)" })
    .strict()
    .help()
    .version(false)
    .parseAsync();
  const count = a.count;
  if (!Number.isInteger(count) || count < 1)
    throw new Error(`--count must be a positive integer, got ${String(a.count)}`);
  const runs: Run[] = [];
  for (const keyType of a.keyType as KeyType[]) {
    if (keyType === "p256") runs.push({ label: "P-256", keyType, rsaKeygen: "workers" });
    else
      for (const g of (a.rsaKeygen === "both" ? ["workers", "openssl"] : [a.rsaKeygen]) as RsaKeygen[])
        runs.push({ label: `RSA-2048 (${g})`, keyType, rsaKeygen: g });
  }
  console.log(
    `bench pki: ${count} device identities per run; ${availableParallelism()} cores (${cpus()[0]?.model ?? "?"}); load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  const ids = generateDeviceIds("bench-", count);
  for (const r of runs) {
    const dir = await mkdtemp(join(tmpdir(), "est-bench-pki-"));
    try {
      await createCa(dir);
      let lastShown = 0;
      const cpu0 = process.cpuUsage();
      const started = performance.now();
      const result = await issueDevices({
        stateDir: dir,
        ids,
        keyType: r.keyType,
        rsaKeygen: r.rsaKeygen,
        onProgress: (done, total) => {
          if (process.stderr.isTTY && (done === total || performance.now() - lastShown > 200)) {
            lastShown = performance.now();
            process.stderr.write(`\r  ${r.label}: ${done}/${total} keys`);
            if (done === total) process.stderr.write("\n");
          }
        },
      });
      const seconds = (performance.now() - started) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      if (result.issued.length !== count) throw new Error(`issued ${result.issued.length} of ${count}`);
      const t = result.timings;
      const s = (ms: number): string => (ms / 1000).toFixed(2);
      console.log(
        `  ${r.label.padEnd(20)} ${seconds.toFixed(2)} s wall  (keys ${s(t.keys)} s, certificates ${s(t.certificates)} s, files ${s(t.files)} s)  ` +
          `${cpuSeconds.toFixed(2)} s CPU  ${((seconds * 1000) / count).toFixed(2)} ms/identity${a.keep ? `  state ${dir}` : ""}`,
      );
    } finally {
      if (!a.keep) await rm(dir, { recursive: true, force: true });
    }
  }
  console.log(
    `  load average after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} (a shared machine: other work competes for the same cores)`,
  );
}
