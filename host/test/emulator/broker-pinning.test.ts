// Emulated boards run the firmware's broker check before they send anything: a server on the broker's
// address whose certificate the fleet's CA really did sign, but for another key (a mis-issued or stolen
// certificate, which Node's TLS accepts), gets no CONNECT and no reading; the boards count the refusals,
// keep retrying, and deliver every reading once the real broker answers on that address.
import { mkdtemp, rm } from "node:fs/promises";
import { createServer as createNetServer, connect as netConnect } from "node:net";
import type { Server as NetServer, Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import type { Server as TlsServer } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, provisionedBrokerPins, spkiPin } from "../../../pki/src/index";
import { parseCertificate } from "../../../firmware/src/tls/certificate";
import type { PkiPaths } from "../../../pki/src/index";
import { startEmbeddedBroker } from "../../src/broker/embedded-broker";
import type { EmbeddedBroker } from "../../src/broker/embedded-broker";
import { Fleet } from "../../src/emulator/fleet";
import { Verifier } from "../../src/emulator/verifier";
import { forgeChains } from "../tls/forged-chains";
import type { ServerChain } from "../tls/forged-chains";
import { until } from "./fleet-helpers";

const DEVICES = ["pin-0001", "pin-0002", "pin-0003"];
const BOOT = 7;

/** A TLS server presenting a given chain; counts handshakes and any application byte a client sends. */
async function rogueServer(
  chain: ServerChain,
): Promise<{ server: TlsServer; port: number; handshakes: number; bytes: number }> {
  const state = { server: undefined as unknown as TlsServer, port: 0, handshakes: 0, bytes: 0 };
  state.server = createTlsServer(
    { key: chain.keyPem, cert: chain.certPem, minVersion: "TLSv1.2" },
    (socket) => {
      state.handshakes++;
      socket.on("data", (d: Buffer) => (state.bytes += d.length));
      socket.on("error", () => undefined);
    },
  );
  state.server.on("tlsClientError", () => undefined);
  await new Promise<void>((r) => state.server.listen(0, "127.0.0.1", r));
  state.port = (state.server.address() as { port: number }).port;
  return state;
}

/** The broker's address: forwards each new connection to whichever server `target` names now. */
async function switchableAddress(
  initial: number,
): Promise<{ server: NetServer; port: number; target: number; sockets: Set<Socket> }> {
  const state = {
    server: undefined as unknown as NetServer,
    port: 0,
    target: initial,
    sockets: new Set<Socket>(),
  };
  state.server = createNetServer((inbound) => {
    const outbound = netConnect(state.target, "127.0.0.1");
    for (const s of [inbound, outbound]) {
      state.sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => state.sockets.delete(s));
    }
    inbound.pipe(outbound).pipe(inbound);
    inbound.on("close", () => outbound.destroy());
    outbound.on("close", () => inbound.destroy());
  });
  await new Promise<void>((r) => state.server.listen(0, "127.0.0.1", r));
  state.port = (state.server.address() as { port: number }).port;
  return state;
}

let dir: string;
let pki: PkiPaths;

/** The test's boards, connecting to 127.0.0.1:port and pinning `brokerPins`. */
function fleetAt(port: number, brokerPins: Uint8Array[]): Fleet {
  return new Fleet({
    deviceIds: DEVICES,
    rateHz: 5,
    seed: 1,
    host: "127.0.0.1",
    port,
    caFile: pki.root,
    brokerPins,
    device: (id) => pki.device(id),
    boot: BOOT,
    connectRate: 50,
  });
}
let broker: EmbeddedBroker;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-pinning-"));
  pki = await ensureDevPki({ stateDir: dir, devices: DEVICES, services: ["monitor"] });
  broker = await startEmbeddedBroker({
    caBundle: pki.caBundle,
    crl: pki.crl,
    cert: pki.broker.cert,
    key: pki.broker.key,
  });
}, 120_000);
afterAll(async () => {
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("emulated boards and a rogue server on the broker's address", () => {
  it("send nothing to a CA-signed impostor, retry with backoff, then deliver every reading to the real broker", async () => {
    const chains = await forgeChains(dir, DEVICES[0]!, ["localhost", "127.0.0.1", "::1"]);
    const rogue = await rogueServer(chains.misIssued);
    const address = await switchableAddress(rogue.port);
    const verifier = new Verifier({
      host: broker.host,
      port: broker.port,
      caFile: pki.caBundle,
      certFile: pki.service("monitor").cert,
      keyFile: pki.service("monitor").key,
      clientId: "monitor",
      expectedBoot: BOOT,
      decode: { kind: "plain" },
      keepReadings: true,
    });
    await verifier.start();
    const fleet = fleetAt(address.port, await provisionedBrokerPins(dir));
    try {
      await fleet.init();
      fleet.start();
      await until(
        "every board to refuse the impostor twice",
        () => fleet.stats.brokerRefused >= 2 * DEVICES.length,
      );
      expect(rogue.handshakes).toBeGreaterThanOrEqual(2 * DEVICES.length);
      expect(rogue.bytes).toBe(0);
      expect(fleet.stats.connects).toBe(0);
      expect(fleet.stats.readings).toBeGreaterThan(0);

      address.target = broker.port;
      await until(
        "every board to connect to the real broker",
        () => fleet.stats.connected === DEVICES.length,
        45_000,
      );
      await new Promise((r) => setTimeout(r, 1000));
      await fleet.stopSampling();
      expect(await fleet.drain(20_000)).toBe(0);
      const counts = await fleet.deviceCounts();
      await until(
        "the verifier to see every reading",
        () => verifier.unique === counts.reduce((n, c) => n + c.published, 0),
        10_000,
      );
      for (const c of counts) {
        expect(c.dropped).toBe(0);
        const seqs = verifier.readings.filter((r) => r.sensorId === c.id).map((r) => r.seq);
        expect(new Set(seqs)).toEqual(new Set(Array.from({ length: c.published }, (_, k) => k)));
      }
      expect(rogue.bytes).toBe(0);
    } finally {
      await fleet.shutdown();
      verifier.stop();
      rogue.server.close();
      for (const s of address.sockets) s.destroy();
      address.server.close();
    }
  }, 120_000);

  // OpenSSL does not verify the emulated boards' server chains (node-mqtt-client.ts: the board's check is the
  // only judge, as on the board), so the check's chain rules must refuse a forged chain on their own: here
  // the boards are mis-provisioned with the forger's key pinned, so only the chain can give it away.
  it.each(["selfSigned", "attackerSigned", "deviceSigned"] as const)(
    "send nothing to a %s chain even with its key pinned",
    async (which) => {
      const chains = await forgeChains(dir, DEVICES[0]!, ["localhost", "127.0.0.1", "::1"]);
      const forged = chains[which];
      const rogue = await rogueServer(forged);
      const fleet = fleetAt(rogue.port, [
        spkiPin(parseCertificate(forged.chain[0]!).spki),
        ...(await provisionedBrokerPins(dir)),
      ]);
      try {
        await fleet.init();
        fleet.start();
        await until(
          "every board to refuse the forged chain twice",
          () => fleet.stats.brokerRefused >= 2 * DEVICES.length,
        );
        expect(rogue.bytes).toBe(0);
        expect(fleet.stats.connects).toBe(0);
      } finally {
        await fleet.shutdown();
        rogue.server.close();
      }
    },
    60_000,
  );
});
