// Start-up order matters and is fixed here: identity (or wait for provisioning), boot counter (before
// anything is sealed), network, clock (before TLS, which checks certificate dates), then the MQTT
// session and the sampling loop. A failure at any step is reported and retried; nothing throws out
// of start(), because an exception at boot on the board is a reset and a reset loop.
import type { KeyMaker } from "../identity/key-maker";
import type { Aead } from "../envelope/aead";
import { PROV_NAMESPACE, parseIdentity } from "../identity/nvs-layout";
import type { DeviceIdentity, IdentityError } from "../identity/nvs-layout";
import { TrustRotationHandler } from "../identity/trust-rotation";
import { Outbox } from "../outbox/outbox";
import type { FlashArea } from "../outbox/flash-area";
import OutboxJournal from "../outbox/outbox-journal";
import type { PayloadMode } from "../payload/telemetry-message";
import { statusTopic, telemetryTopic } from "../telemetry/topics";
import type { AppConfig } from "./app-config";
import Backoff from "./backoff";
import BrokerRotation from "./broker-rotation";
import BootCounter from "./boot-counter";
import { deviceRandom } from "./device-random";
import type { MqttClientFactory } from "./mqtt-client";
import MqttSession from "./mqtt-session";
import type { OutboxMessage } from "./mqtt-session";
import Sampler from "./sampler";
import { offlineStatus, onlineStatus } from "./status-message";
import { SessionTrust } from "./session-trust";
import type {
  Clock,
  Instruments,
  Log,
  Network,
  PreferenceStore,
  RandomSource,
  TimeSync,
  TimerHandle,
  Timers,
} from "./services";

export interface TelemetryAppOptions {
  config: AppConfig;
  /** Problems found while reading mc/config, reported at start. */
  configProblems?: readonly string[];
  store: PreferenceStore;
  timers: Timers;
  clock: Clock;
  log: Log;
  random: RandomSource;
  instruments: Instruments;
  network: Network;
  timeSync: TimeSync;
  mqtt: MqttClientFactory;
  /** The envelope's AES-GCM; null on a build without it (then only plaintext fleets can run). */
  aead: Aead | null;
  /** Makes keys and CSRs for key requests on down/trust (mbedTLS on the board); without it they are refused. */
  keys?: KeyMaker;
  /**
   * The flash area of the outbox ring (config outboxPartition), opened by the platform; absent: the outbox is
   * in RAM only and a reboot loses what it held.
   */
  outboxFlash?: FlashArea;
}

export type AppState = "idle" | "awaiting-provisioning" | "network" | "clock" | "running" | "failed";

export default class TelemetryApp {
  readonly #o: TelemetryAppOptions;
  #state: AppState = "idle";
  #identity: DeviceIdentity | undefined;
  #boot: number | undefined;
  #outbox: Outbox<OutboxMessage> | undefined;
  #journal: OutboxJournal<OutboxMessage> | undefined;
  #session: MqttSession | undefined;
  #sampler: Sampler | undefined;
  #retry: TimerHandle | undefined;
  #stats: TimerHandle | undefined;
  readonly #stepBackoff: Backoff;

  constructor(options: TelemetryAppOptions) {
    this.#o = options;
    this.#stepBackoff = new Backoff({
      minMs: options.config.reconnectMinMs,
      maxMs: options.config.reconnectMaxMs,
      random: options.random,
    });
  }

  get state(): AppState {
    return this.#state;
  }
  get boot(): number | undefined {
    return this.#boot;
  }
  get identity(): DeviceIdentity | undefined {
    return this.#identity;
  }
  get outbox(): Outbox<OutboxMessage> | undefined {
    return this.#outbox;
  }
  get session(): MqttSession | undefined {
    return this.#session;
  }
  /** The outbox's flash ring, when the board has one. */
  get journal(): OutboxJournal<OutboxMessage> | undefined {
    return this.#journal;
  }
  get sampler(): Sampler | undefined {
    return this.#sampler;
  }

  start(): void {
    if (this.#state !== "idle") return;
    for (const p of this.#o.configProblems ?? []) this.#o.log.warn(p);
    this.#loadIdentity();
  }

  stop(): void {
    this.#o.timers.clear(this.#retry);
    this.#retry = undefined;
    this.#o.timers.clear(this.#stats);
    this.#stats = undefined;
    this.#sampler?.stop();
    this.#session?.stop();
  }

  /** One console line of delivery counters. */
  statsLine(): string {
    const outbox = this.#outbox;
    const session = this.#session;
    if (!outbox || !session) return `stats: ${this.#state}`;
    const c = session.counters;
    return (
      `stats: boot ${this.#boot} next seq ${outbox.nextSeq}, queued ${outbox.size} (${outbox.inflight} in flight), ` +
      `published ${c.published} (${c.republished} resent), acked ${c.acked}, dropped ${outbox.dropped}, ` +
      `confirmations ${session.confirmationState} (confirmed ${c.confirmed}, awaiting ${outbox.delivered}, ` +
      `requeued ${c.requeued}, released unconfirmed ${c.releasedUnconfirmed}), ` +
      `connects ${c.connects}, lost ${c.connectionsLost}, tls refused ${c.tlsFailures}, ` +
      `trust staged ${c.trustStaged} refused ${c.trustRefused} (switches ${c.identitySwitches}, ` +
      `new identity refused ${c.identityFailures}), mqtt ${session.state}` +
      journalStats(this.#journal)
    );
  }

  #loadIdentity(): void {
    const { log, store, config } = this.#o;
    this.#retry = undefined;
    const result = parseIdentity((key) => store.get(PROV_NAMESPACE, key));
    const problems: IdentityError[] = result.ok ? [] : result.errors;
    let identity: DeviceIdentity | undefined;
    if (result.ok) {
      identity = applyOverrides(result.identity, config);
      if (config.encryptRequired && !identity.payload)
        problems.push({
          key: "encrypt",
          code: "invalid",
          message: "encrypt is 0 but this firmware requires payload encryption",
        });
      if (identity.payload && !this.#o.aead)
        problems.push({
          key: "encrypt",
          code: "invalid",
          message: "encrypt is 1 but this build has no AES-GCM",
        });
    }
    if (!identity || problems.length > 0) {
      this.#state = "awaiting-provisioning";
      const missing = problems.every((p) => p.code === "missing");
      log.error(`identity: ${missing ? "not provisioned" : "unusable"} (namespace "${PROV_NAMESPACE}")`);
      // Keys and rules only: values may be secrets.
      for (const p of problems) log.error(`  ${p.message}`);
      log.error(
        `waiting for provisioning (npm run provision); checking again every ${config.provisioningPollMs} ms`,
      );
      this.#retry = this.#o.timers.set(() => this.#loadIdentity(), config.provisioningPollMs);
      return;
    }
    this.#identity = identity;

    try {
      this.#boot = new BootCounter({ store }).advance();
    } catch (e) {
      this.#state = "failed";
      log.error(`boot counter: ${e instanceof Error ? e.message : String(e)}; not publishing (nonce safety)`);
      this.#retry = this.#o.timers.set(() => this.#loadIdentity(), config.provisioningPollMs);
      return;
    }
    log.info(
      `device ${identity.deviceId} boot ${this.#boot} fw ${config.fw}: ${identity.brokerHost}:${identity.port}` +
        `${identity.failover ? ` (+${identity.failover.length} failover)` : ""}, ` +
        `every ${identity.intervalMs} ms, ${identity.tls ? "mutual TLS" : "NO TLS"}, ${identity.payload ? `encrypted (key ${identity.payload.keyId})` : "plaintext"}`,
    );
    this.#stepBackoff.reset();
    this.#bringUpNetwork();
  }

  #bringUpNetwork(): void {
    this.#retry = undefined;
    this.#state = "network";
    this.#o.network.connect(this.#identity!.wifi, (ok, detail) => {
      if (ok) {
        this.#stepBackoff.reset();
        this.#syncClock();
      } else this.#retryStep("network", detail, () => this.#bringUpNetwork());
    });
  }

  #syncClock(): void {
    this.#retry = undefined;
    this.#state = "clock";
    this.#o.timeSync.sync((ok, detail) => {
      if (ok) this.#run();
      else this.#retryStep("clock", detail, () => this.#syncClock());
    });
  }

  #retryStep(step: string, detail: string | undefined, again: () => void): void {
    const delay = this.#stepBackoff.next();
    this.#o.log.warn(`${step}: ${detail ?? "failed"}; retrying in ${delay} ms`);
    this.#retry = this.#o.timers.set(again, delay);
  }

  /** Mounts the flash ring and loads what earlier boots left in it; undefined without one (or if it fails). */
  #openJournal(boot: number, deviceId: string): OutboxJournal<OutboxMessage> | undefined {
    const o = this.#o;
    if (!o.outboxFlash) return undefined;
    const topic = telemetryTopic(deviceId);
    try {
      const journal = new OutboxJournal<OutboxMessage>({
        flash: o.outboxFlash,
        boot,
        capacity: o.config.outboxCapacity,
        item: (payload) => ({ topic, payload }),
      });
      const c = journal.counts;
      o.log.info(
        `outbox: flash ring of ${journal.ring.sectorCount} sectors, ${c.recovered} reading(s) of earlier boots ` +
          `recovered, ${c.loaded} queued to send${c.skipped ? `, ${c.skipped} of this boot or later skipped` : ""}`,
      );
      return journal;
    } catch (e) {
      o.log.error(`outbox: flash ring unusable (${e instanceof Error ? e.message : String(e)}); RAM only`);
      return undefined;
    }
  }

  #run(): void {
    const o = this.#o;
    const identity = this.#identity!;
    const boot = this.#boot!;
    const config = o.config;
    const journal = this.#openJournal(boot, identity.deviceId);
    this.#journal = journal;
    const outbox = journal?.outbox ?? new Outbox<OutboxMessage>({ capacity: config.outboxCapacity });
    this.#outbox = outbox;
    const mode: PayloadMode =
      identity.payload && o.aead
        ? { kind: "encrypted", aead: o.aead, keyId: identity.payload.keyId, key: identity.payload.key }
        : { kind: "plain" };
    const topic = statusTopic(identity.deviceId);
    // Field rotation needs the payload key (trust messages are sealed under it); a plaintext board keeps the
    // identity it was provisioned with and ignores down/trust. With rotation, readings are sealed under the
    // payload key of the slot in use (the handler's payloadMode), which a committed rotation changes.
    const handler =
      identity.tls && identity.payload && o.aead
        ? new TrustRotationHandler({
            store: o.store,
            aead: o.aead,
            clock: o.clock,
            log: o.log,
            deviceId: identity.deviceId,
            payload: identity.payload,
            base: identity.tls,
            ...(o.keys ? { keys: o.keys } : {}),
          })
        : undefined;
    // The boot line names the provisioned key; a board that committed a rotation seals under its slot's.
    const sealing = handler?.payloadMode();
    if (sealing?.kind === "encrypted" && sealing.keyId !== identity.payload?.keyId)
      o.log.info(
        `trust: identity slot ${handler!.connection().slot} in use, sealing under payload key ${sealing.keyId}`,
      );
    const trust = !identity.tls
      ? undefined
      : handler
        ? new SessionTrust({ handler })
        : new SessionTrust({ tls: identity.tls });
    const session = new MqttSession({
      factory: o.mqtt,
      timers: o.timers,
      log: o.log,
      backoff: new Backoff({
        minMs: config.reconnectMinMs,
        maxMs: config.reconnectMaxMs,
        random: deviceRandom(o.random, identity.deviceId, boot),
      }),
      outbox,
      brokers: new BrokerRotation(
        [{ host: identity.brokerHost, port: identity.port }, ...(identity.failover ?? [])],
        { now: () => o.clock.now() },
      ),
      clientId: identity.deviceId,
      tls: null,
      ...(trust ? { trust } : {}),
      keepaliveMs: config.keepaliveMs,
      maxInflight: config.maxInflight,
      connectTimeoutMs: config.connectTimeoutMs,
      statusTopic: topic,
      onlineStatus: (certSerial) =>
        onlineStatus({ boot, fw: config.fw, outbox, now: o.clock.now(), certSerial }),
      offlineStatus: offlineStatus(boot),
      confirmations: { mode: config.confirmations, timeoutMs: config.confirmTimeoutMs, boot },
      ...(journal ? { earlierBoots: journal } : {}),
      now: () => o.clock.now(),
    });
    this.#session = session;
    this.#sampler = new Sampler({
      timers: o.timers,
      clock: o.clock,
      log: o.log,
      instruments: o.instruments,
      outbox,
      intervalMs: identity.intervalMs,
      sensorId: identity.deviceId,
      boot,
      fw: config.fw,
      mode: handler ?? mode,
      onQueued: () => session.notify(),
    });
    this.#state = "running";
    session.start();
    this.#sampler.start();
    if (config.statsIntervalMs > 0)
      this.#stats = o.timers.repeat(() => o.log.info(this.statsLine()), config.statsIntervalMs);
  }
}

function journalStats(j: OutboxJournal<OutboxMessage> | undefined): string {
  if (!j) return ", flash ring none";
  const c = j.counts;
  return (
    `, flash ring ${j.ring.unconfirmed} held (recovered ${c.recovered}, loaded ${c.loaded}, ` +
    `ring dropped ${j.ringDropped}, spilled from RAM ${c.ramDropped} (waiting ${j.spilled}, read back ${c.restored}), ` +
    `append failures ${c.appendFailures})`
  );
}

function applyOverrides(identity: DeviceIdentity, config: AppConfig): DeviceIdentity {
  const out: DeviceIdentity = { ...identity };
  if (config.intervalMs !== null) out.intervalMs = config.intervalMs;
  if (config.brokerHost !== null) out.brokerHost = config.brokerHost;
  if (config.brokerPort !== null) out.port = config.brokerPort;
  return out;
}
