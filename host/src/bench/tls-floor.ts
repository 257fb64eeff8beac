// `npm run bench -- tls-floor`: what Node's TLS costs before a board does anything. N client connections, each with
// its own certificate (so its own SecureContext), TLS 1.2 like the boards, to Debian's Mosquitto; each publishes one
// fixed QoS 1 message per second and reads its PUBACK into one shared buffer. No physics, JSON, outbox or statistics:
// the figures are the floor under the emulator's CPU per message and memory per board.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { createSecureContext, connect as tlsConnect } from "node:tls";
import type { ConnectionOptions, SecureContext, TLSSocket } from "node:tls";
import type { OnReadOpts } from "node:net";
import mqttPacket from "mqtt-packet";
import yargs from "yargs";
import { ensureDevPki } from "../../../pki/src/index";
import { startMosquitto } from "../broker/mosquitto";
import { deviceIds } from "../emulator/run";
import { ensureFdLimit } from "../emulator/fd-limit";
import { encodePublish } from "../emulator/mqtt/frames";
import { sleep } from "../emulator/fleet";
import { telemetryTopic } from "../../../firmware/src/telemetry/topics";
import { stateDir } from "../../../shared/state-dir";

const PAYLOAD_BYTES = 227; // a plain reading

export async function run(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .scriptName("npm run bench -- tls-floor")
    .usage(
      "$0 [options]\n\nThe cost of bare per-device mTLS connections in Node: memory per context and connection, CPU per QoS 1 message.",
    )
    .option("count", { type: "number", default: 5000, describe: "connections (P-256 device identities)" })
    .option("duration", { type: "number", default: 30, describe: "seconds of publishing" })
    .strict()
    .help()
    .parseAsync();
  const n = a.count;
  if (!Number.isInteger(n) || n < 1) throw new Error("--count must be a positive integer");
  ensureFdLimit(n + 200);
  const state = join(stateDir(), "bench", "emulate", "p256");
  const log = (s: string): void => console.error(s);
  log(`PKI (P-256, ${n} devices) in ${state} …`);
  const ids = deviceIds(n);
  const pki = await ensureDevPki({
    stateDir: state,
    devices: ids,
    services: ["monitor"],
    deviceKeyType: "p256",
  });
  const dataDir = await mkdtemp(join(state, "mosquitto-floor-"));
  const broker = await startMosquitto({ pki, dataDir });
  const sockets: TLSSocket[] = [];
  try {
    const root = await readFile(pki.root);
    const files = await Promise.all(
      ids.map(async (id) => ({
        cert: await readFile(pki.device(id).cert),
        key: await readFile(pki.device(id).key),
      })),
    );
    const rss0 = process.memoryUsage().rss;
    const contexts: SecureContext[] = files.map((f) =>
      createSecureContext({
        ca: root,
        cert: f.cert,
        key: f.key,
        minVersion: "TLSv1.2",
        maxVersion: "TLSv1.2",
      }),
    );
    const rss1 = process.memoryUsage().rss;
    log(`${n} contexts loaded; connecting …`);

    const shared = Buffer.allocUnsafe(16 * 1024);
    let acks = 0;
    let connacks = 0;
    let failures = 0;
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      let next = 0;
      const open = (): void => {
        if (next >= n) return;
        const i = next++;
        // tls.connect takes net's onread (Node PR #35753); @types/node only declares it for net.
        const options: ConnectionOptions & { onread: OnReadOpts } = {
          host: broker.host,
          port: broker.port,
          secureContext: contexts[i]!,
          onread: {
            buffer: shared,
            callback: (len: number, buf: Uint8Array): boolean => {
              // Only CONNACK (0x20) and PUBACK (0x40) come back; count them by their first bytes.
              for (let o = 0; o + 1 < len; o += 2 + buf[o + 1]!) {
                if (buf[o] === 0x40) acks++;
                else if (buf[o] === 0x20) {
                  connacks++;
                  if (connacks + failures === n) resolve();
                  open();
                }
              }
              return true;
            },
          },
        };
        const socket = tlsConnect(options);
        socket.setNoDelay(true);
        socket.once("secureConnect", () =>
          socket.write(
            mqttPacket.generate({
              cmd: "connect",
              protocolId: "MQTT",
              protocolVersion: 4,
              clientId: ids[i]!,
              clean: true,
              keepalive: 600,
            }),
          ),
        );
        socket.on("error", () => undefined);
        socket.once("close", () => {
          failures++;
          if (failures > n / 100) reject(new Error(`${failures} connections failed`));
        });
        sockets.push(socket);
      };
      for (let k = 0; k < 256; k++) open();
    });
    const connectS = (performance.now() - t0) / 1000;
    await sleep(2000);
    const rss2 = process.memoryUsage().rss;
    log(`${connacks} connected in ${connectS.toFixed(2)} s; publishing 1 msg/s each for ${a.duration} s …`);

    const payload = Buffer.alloc(PAYLOAD_BYTES, 0x61);
    const topics = ids.map((id) => Buffer.from(telemetryTopic(id)));
    const packetIds = new Uint16Array(n);
    let cursor = 0;
    const perTick = n / 200; // a 5 ms tick, as the fleet's
    let owed = 0;
    const cpu0 = process.cpuUsage();
    const acks0 = acks;
    const timer = setInterval(() => {
      owed += perTick;
      for (; owed >= 1; owed--) {
        const i = cursor++ % n;
        packetIds[i] = (packetIds[i]! % 65000) + 1;
        sockets[i]!.write(encodePublish(topics[i]!, payload, 1, false, packetIds[i]!, false));
      }
    }, 5);
    await sleep(a.duration * 1000);
    clearInterval(timer);
    const cpu = process.cpuUsage(cpu0);
    const messages = acks - acks0;
    const rss3 = process.memoryUsage().rss;
    const us = (x: number): string => (x / Math.max(1, messages)).toFixed(1);
    console.log(
      `\nbare mTLS clients (TLS 1.2, own certificate each) vs mosquitto, ${n} connections, ${a.duration} s at 1 msg/s, QoS 1`,
    );
    console.log(
      `memory: ${((rss1 - rss0) / n / 1024).toFixed(1)} KB per SecureContext + ${((rss2 - rss1) / n / 1024).toFixed(1)} KB per idle connection = ${((rss2 - rss0) / n / 1024).toFixed(1)} KB per board before any board state; ${((rss3 - rss0) / n / 1024).toFixed(1)} KB per board after the traffic`,
    );
    console.log(
      `cpu: ${us(cpu.user + cpu.system)} µs per acknowledged message (user ${us(cpu.user)}, system ${us(cpu.system)}), ${messages} messages`,
    );
    console.log(`connect: ${connacks} in ${connectS.toFixed(2)} s, ${failures} failed`);
  } finally {
    for (const s of sockets) s.destroy();
    await broker.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
