// `npm run bench -- provision [--runs N] [--baud B]`: time to provision one board through the ESP32
// ROM-loader double over a socat pty pair (connect, stub, baud switch, partition table and NVS read,
// compressed write, MD5, read-back), and the NVS image size for a typical identity.
import { deviceIdSequence } from "../../../firmware/src/telemetry/vocabulary";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { deflateSync } from "node:zlib";
import { ensureDevPki } from "../../../pki/src/index";
import { startVirtualBoard } from "../../testkit/esp32-rom-double/virtual-board";
import { loadOrCreatePayloadMaster } from "../crypto/device-keys";
import { loadIdentity, type IdentitySettings } from "../provision/identity";
import { identityImage } from "../provision/nvs-image";
import { buildPartitionTable, MODDABLE_PARTITIONS, MODDABLE_NVS } from "../provision/partition-table";
import { provisionBoard } from "../provision/provision-board";

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: "string", default: "5" },
      baud: { type: "string", default: "921600" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(
      "Usage: npm run bench -- provision [--runs N] [--baud B]\n" +
        "Provisions a virtual ESP32 (the test tree's ROM-loader double behind a socat pty pair) N times and prints the timings and image size.",
    );
    return;
  }
  const runs = Number(values.runs);
  const baud = Number(values.baud);
  if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs must be a positive integer");
  if (!Number.isInteger(baud) || baud < 9600) throw new Error("--baud must be a baud rate");

  const state = await mkdtemp(join(tmpdir(), "bench-provision-"));
  try {
    const devices = deviceIdSequence("elx-bench-", runs, 4);
    await ensureDevPki({ stateDir: state, devices });
    await loadOrCreatePayloadMaster(state, 1);
    const settings: IdentitySettings = {
      broker: "mqtts://broker.example.net:8883",
      intervalMs: 5000,
      site: "site-1",
      keyId: 1,
      wifi: { ssid: "plant-floor", psk: "a-typical-wpa2-passphrase" },
    };

    const { identity } = await loadIdentity(state, devices[0]!, settings);
    const img = identityImage(identity, 29_000_000, MODDABLE_NVS.size);
    const blobs =
      identity.tls!.caDer.length +
      identity.tls!.certDer.length +
      identity.tls!.keyDer.length +
      identity.payload!.key.length;
    console.log("typical identity (RSA-2048 device key, root CA, payload key, Wi-Fi, site):");
    console.log(
      `  DER/key material        ${blobs} bytes (CA ${identity.tls!.caDer.length}, cert ${identity.tls!.certDer.length}, key ${identity.tls!.keyDer.length}, payload key 32)`,
    );
    console.log(
      `  NVS entries used        ${img.usedEntries} × 32 B = ${img.usedBytes} bytes of a ${MODDABLE_NVS.size}-byte partition (${((100 * img.usedBytes) / ((MODDABLE_NVS.size / 4096 - 1) * 126 * 32)).toFixed(1)} % of the usable entries)`,
    );
    console.log(
      `  image on the wire       ${deflateSync(img.image, { level: 9 }).length} bytes compressed (zlib level 9, as esptool-js sends it)`,
    );

    const totals: number[] = [];
    const connects: number[] = [];
    const writes: number[] = [];
    for (let i = 0; i < runs; i++) {
      const mac = Uint8Array.of(0x24, 0x0a, 0xc4, 0x00, (i >> 8) & 0xff, i & 0xff);
      const board = await startVirtualBoard({
        mac,
        preload: [{ address: 0x8000, data: buildPartitionTable(MODDABLE_PARTITIONS) }],
      });
      try {
        const r = await provisionBoard({
          stateDir: state,
          path: board.hostPath,
          baud,
          deviceId: devices[i]!,
          settings,
          force: false,
          dryRun: false,
          verify: true,
          progress: () => {},
        });
        totals.push(r.timings.totalMs);
        connects.push(r.timings.connectMs);
        writes.push(r.timings.writeMs);
      } finally {
        await board.stop();
      }
    }
    const fmt = (xs: number[]): string => {
      const s = [...xs].sort((a, b) => a - b);
      const median = s[Math.floor(s.length / 2)]!;
      return `median ${(median / 1000).toFixed(3)} s, min ${(s[0]! / 1000).toFixed(3)} s, max ${(s[s.length - 1]! / 1000).toFixed(3)} s`;
    };
    console.log(
      `provisioning one board through the double at ${baud} baud (${runs} runs, --verify, in-process; CLI start-up not included):`,
    );
    console.log(`  total                   ${fmt(totals)}`);
    console.log(`  connect (sync, stub)    ${fmt(connects)}`);
    console.log(`  write + MD5 + read-back ${fmt(writes)}`);
    // A pty moves bytes at memory speed; a real UART needs 10 bit times per byte.
    const compressed = deflateSync(img.image, { level: 9 }).length;
    const stubBytes = 6456 + 212; // esptool-js's ESP32 stub text + data, sent at the ROM's 115200 baud
    const fastBytes = 0xc00 + 2 * MODDABLE_NVS.size + compressed; // partition table, NVS before + read-back, write
    const wire = (stubBytes * 10) / 115200 + (fastBytes * 10) / baud;
    console.log(
      `  serial-line time a real UART adds (10 bits/byte; stub ${stubBytes} B at 115200, ${fastBytes} B at ${baud}): about ${wire.toFixed(2)} s, plus the board's reset delays`,
    );
  } finally {
    await rm(state, { recursive: true, force: true });
  }
}
