// `npm run bench -- envelope [--messages N]`: the AES-256-GCM envelope's size overhead and
// seal+open throughput on one core, for a typical reading.
import { parseArgs } from "node:util";
import { cpus } from "node:os";
import { encodeReading } from "../../../firmware/src/payload/codec";
import {
  decodeTelemetryMessage,
  encodeTelemetryMessage,
} from "../../../firmware/src/payload/telemetry-message";
import { ENVELOPE_OVERHEAD_BYTES } from "../../../firmware/src/envelope/envelope";
import type { Reading } from "../../../firmware/src/telemetry/reading";
import { nodeAead } from "../crypto/node-aead";
import { deriveDeviceKey } from "../crypto/device-keys";

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { messages: { type: "string", default: "200000" }, help: { type: "boolean" } },
  });
  if (values.help) {
    console.log(
      "Usage: npm run bench -- envelope [--messages N]\nPrints the envelope overhead and seal/open throughput on one core.",
    );
    return;
  }
  const n = Number(values.messages);
  if (!Number.isInteger(n) || n < 1) throw new Error("--messages must be a positive integer");
  const key = deriveDeviceKey(new Uint8Array(32).fill(1), "elx-site1-0001");
  const reading = (seq: number): Reading => ({
    sensorId: "elx-site1-0001",
    seq,
    ts: Date.now(),
    boot: 3,
    fw: "0.1.0",
    values: {
      temperature_c: 64.219,
      pressure_bar: 29.8731,
      h2_flow_sccm: 41230.5,
      purity_pct: 99.9912,
      voltage_v: 182.402,
      current_a: 512.125,
    },
    faults: [],
  });
  const enc = { kind: "encrypted" as const, aead: nodeAead, keyId: 0, key };
  const dec = { kind: "encrypted" as const, aead: nodeAead, keyFor: () => key };
  const plainBytes = encodeReading(reading(0)).length;
  const sealed = encodeTelemetryMessage(reading(0), enc).payload.length;

  const time = (fn: (i: number) => void): number => {
    for (let i = 0; i < Math.min(n, 5000); i++) fn(i); // warm-up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn(i);
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  const msgs = Array.from({ length: Math.min(n, 10000) }, (_, i) => encodeTelemetryMessage(reading(i), enc));
  const plain = Array.from({ length: Math.min(n, 10000) }, (_, i) =>
    encodeTelemetryMessage(reading(i), { kind: "plain" }),
  );
  const tEncode = time((i) => encodeTelemetryMessage(reading(i), { kind: "plain" }));
  const tSeal = time((i) => encodeTelemetryMessage(reading(i), enc));
  const tDecode = time((i) => {
    const m = plain[i % plain.length]!;
    if (!decodeTelemetryMessage(m.topic, m.payload, { kind: "plain" }).ok) throw new Error("decode failed");
  });
  const tOpen = time((i) => {
    const m = msgs[i % msgs.length]!;
    if (!decodeTelemetryMessage(m.topic, m.payload, dec).ok) throw new Error("open failed");
  });
  const rate = (t: number): string =>
    `${Math.round(n / t).toLocaleString("en-US")} msg/s (${((t / n) * 1e6).toFixed(2)} µs/msg)`;
  console.log(
    `machine: ${cpus()[0]?.model ?? "unknown"} × ${cpus().length}, node ${process.version}; ${n} messages, one core`,
  );
  console.log(
    `plain JSON reading: ${plainBytes} bytes; sealed envelope: ${sealed} bytes; overhead ${sealed - plainBytes} bytes (header 14 + tag 16 = ${ENVELOPE_OVERHEAD_BYTES})`,
  );
  console.log(`encode plain:         ${rate(tEncode)}`);
  console.log(`encode + seal:        ${rate(tSeal)}`);
  console.log(`decode plain:         ${rate(tDecode)}`);
  console.log(`open + decode:        ${rate(tOpen)}`);
  console.log(`seal + open (round):  ${Math.round(n / (tSeal + tOpen)).toLocaleString("en-US")} msg/s`);
}
