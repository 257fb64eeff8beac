import { access, constants, readFile } from "node:fs/promises";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import type { RevocationList } from "../../../pki/src/revocations";
import { writeFileAtomic } from "../../../shared/state-dir";
import type { RevocationOutcome } from "./crl-keeper";
import { normalSerial } from "./crl-view";

/** The launcher's own certificate CN (a reserved service name; infra/mosquitto/acl.template grants it $CONTROL). */
export const BROKER_ADMIN_IDENTITY = "broker-admin";
const CONTROL_TOPIC = "$CONTROL/dynamic-security/v1";
const RESPONSE_TOPIC = `${CONTROL_TOPIC}/response`;
const REVOKED_ROLE = "revoked";
const COMMAND_TIMEOUT_MS = 5000;

const PLUGIN_CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
  "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
  "/usr/lib/mosquitto_dynamic_security.so",
];

/** Debian's mosquitto package ships the plugin; $MOSQUITTO_DYNSEC_PLUGIN overrides the search. */
export async function findDynsecPlugin(): Promise<string | undefined> {
  const candidates = process.env.MOSQUITTO_DYNSEC_PLUGIN
    ? [process.env.MOSQUITTO_DYNSEC_PLUGIN]
    : PLUGIN_CANDIDATES;
  for (const c of candidates) {
    try {
      await access(c, constants.R_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

/**
 * The plugin's file as the broker starts: no defaults of its own (everything it does not know is left to
 * the ACL file, which it defers to), one role that denies everything, and one client per denied identity.
 */
export function dynsecConfig(denied: Iterable<string>): string {
  const deny = (acltype: string): { acltype: string; topic: string; priority: number; allow: boolean } => ({
    acltype,
    topic: "#",
    priority: 0,
    allow: false,
  });
  return `${JSON.stringify(
    {
      defaultACLAccess: {
        publishClientSend: false,
        publishClientReceive: false,
        subscribe: false,
        unsubscribe: false,
      },
      clients: [...denied].map((username) => ({
        username,
        disabled: true,
        roles: [{ rolename: REVOKED_ROLE }],
      })),
      groups: [],
      roles: [
        {
          rolename: REVOKED_ROLE,
          acls: [
            deny("publishClientSend"),
            deny("publishClientReceive"),
            deny("subscribePattern"),
            deny("subscribeLiteral"),
          ],
        },
      ],
    },
    null,
    1,
  )}\n`;
}

export async function readRevocationList(path: string): Promise<RevocationList | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const v = JSON.parse(text) as Partial<RevocationList>;
  if (v.version !== 1 || !Array.isArray(v.denied) || !Array.isArray(v.revoked))
    throw new Error(`${path} is not a revocation list`);
  return v as RevocationList;
}

export interface RevocationSyncOptions {
  revocationsPath: string;
  brokerUrl: string;
  /** CA bundle the broker's certificate chains to. */
  ca: string;
  admin: { certPem: string; keyPem: string };
  log: (line: string) => void;
  /** How often revocations.json is read (a re-issued identity leaves the denied list). Default 1 s. */
  pollMs?: number;
}

/**
 * Cuts off revoked identities on a running Mosquitto 2.0 without restarting it. Mosquitto reads its CRL at
 * start only, but its dynamic-security plugin can change a client while it is connected: creating the
 * client with a deny-all role disconnects it ("disconnected by administrative action") and every later
 * connection of that CN may publish, subscribe and receive nothing. (`disableClient` alone does not keep
 * it out: with use_identity_as_username the plugin's password check is never asked.) The CRL makes the TLS
 * handshake fail from the next restart on. Only whole identities can be cut off this way, because the
 * broker identifies a client by its CN; a single serial of an identity that still holds a valid
 * certificate needs the restart (`restartNeeded`).
 */
export class RevocationSync {
  #denied: Set<string>;
  #client: MqttClient | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #seen = "";
  #syncing: Promise<RevocationList | undefined> | undefined;
  readonly #o: RevocationSyncOptions;

  private constructor(denied: Set<string>, o: RevocationSyncOptions) {
    this.#denied = denied;
    this.#o = o;
  }

  /** Writes the plugin's file from revocations.json before the broker starts; returns what it denies. */
  static async prepare(
    dataDir: string,
    revocationsPath: string,
    plugin: string,
  ): Promise<PreparedRevocation> {
    const list = await readRevocationList(revocationsPath);
    const denied = new Set(list?.denied ?? []);
    const configFile = join(dataDir, "dynamic-security.json");
    await writeFileAtomic(configFile, dynsecConfig(denied), 0o600);
    return {
      dynsec: { plugin, configFile },
      attach: async (o) => {
        const sync = new RevocationSync(denied, o);
        sync.#seen = list ? JSON.stringify(list) : "";
        await sync.#connect();
        sync.#timer = setInterval(
          () => void sync.sync().catch((err: unknown) => sync.#fail(err)),
          o.pollMs ?? 1000,
        );
        sync.#timer.unref();
        return sync;
      },
    };
  }

  get denied(): ReadonlySet<string> {
    return this.#denied;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#syncing?.catch(() => undefined);
    await this.#client?.endAsync();
  }

  /** Brings the broker's denied identities in line with revocations.json; concurrent calls share one run. */
  sync(): Promise<RevocationList | undefined> {
    this.#syncing ??= this.#syncOnce().finally(() => {
      this.#syncing = undefined;
    });
    return this.#syncing;
  }

  /**
   * For the CRL keeper: cut off what can be cut off by name; a restart is needed for any new serial whose
   * identity is not denied (or that revocations.json does not name yet: the CRL and the list are renamed
   * into place one after the other, so the list is read again for a moment before giving up).
   */
  async onNewRevocations(serials: string[]): Promise<RevocationOutcome> {
    for (let attempt = 0; ; attempt++) {
      const list = await this.sync();
      const owner = new Map((list?.revoked ?? []).map((r) => [normalSerial(r.serial), r.name]));
      const unknown = serials.filter((s) => !owner.has(s));
      if (unknown.length > 0 && attempt < 10) {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      const byName = serials.filter((s) => this.#denied.has(owner.get(s) ?? ""));
      if (byName.length > 0)
        this.#o.log(`cut off ${byName.length} revoked certificate(s) by identity, no restart`);
      return { restartNeeded: byName.length < serials.length };
    }
  }

  async #syncOnce(): Promise<RevocationList | undefined> {
    const list = await readRevocationList(this.#o.revocationsPath);
    const text = list ? JSON.stringify(list) : "";
    if (text === this.#seen) return list;
    const wanted = new Set(list?.denied ?? []);
    for (const name of wanted) {
      if (this.#denied.has(name)) continue;
      // createClient with the role kicks a connected client; disableClient kicks one the plugin knew already.
      await this.#command([
        { command: "createClient", username: name, roles: [{ rolename: REVOKED_ROLE }] },
        { command: "disableClient", username: name },
      ]);
      this.#denied.add(name);
      this.#o.log(`identity "${name}" revoked: disconnected and denied`);
    }
    for (const name of [...this.#denied]) {
      if (wanted.has(name)) continue;
      await this.#command([{ command: "deleteClient", username: name }]);
      this.#denied.delete(name);
      this.#o.log(`identity "${name}" has a valid certificate again: no longer denied`);
    }
    this.#seen = text;
    return list;
  }

  #fail(err: unknown): void {
    this.#o.log(`revocation sync failed: ${err instanceof Error ? err.message : String(err)}`);
  }

  async #connect(): Promise<void> {
    const client = mqtt.connect(this.#o.brokerUrl, {
      clientId: BROKER_ADMIN_IDENTITY,
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ca: this.#o.ca,
      cert: this.#o.admin.certPem,
      key: this.#o.admin.keyPem,
      rejectUnauthorized: true,
      resubscribe: true,
    });
    this.#client = client;
    client.on("error", (err) => this.#o.log(`broker-admin connection: ${err.message}`));
    await new Promise<void>((resolve, reject) => {
      client.once("connect", () => resolve());
      client.once("error", reject);
    });
    await client.subscribeAsync(RESPONSE_TOPIC, { qos: 1 });
  }

  /** One request at a time, so the next response on the topic is this request's. */
  #command(commands: Record<string, unknown>[]): Promise<void> {
    const run = async (): Promise<void> => {
      const client = this.#client;
      if (!client) throw new Error("not connected to the broker");
      const response = new Promise<{ responses?: { command: string; error?: string }[] }>(
        (resolve, reject) => {
          const timer = setTimeout(() => {
            client.off("message", onMessage);
            reject(new Error(`no answer from the dynamic-security plugin within ${COMMAND_TIMEOUT_MS} ms`));
          }, COMMAND_TIMEOUT_MS);
          const onMessage = (topic: string, payload: Buffer): void => {
            if (topic !== RESPONSE_TOPIC) return;
            clearTimeout(timer);
            client.off("message", onMessage);
            try {
              resolve(
                JSON.parse(payload.toString("utf8")) as { responses?: { command: string; error?: string }[] },
              );
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)));
            }
          };
          client.on("message", onMessage);
        },
      );
      await client.publishAsync(CONTROL_TOPIC, JSON.stringify({ commands }), { qos: 1 });
      const r = await response;
      // An identity the plugin knows already answers "Client already exists"; the disable that follows kicks it.
      const failed = (r.responses ?? []).filter((x) => x.error && !/already exists|not found/i.test(x.error));
      if (failed.length > 0) throw new Error(failed.map((x) => `${x.command}: ${x.error}`).join("; "));
    };
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}

export interface PreparedRevocation {
  dynsec: { plugin: string; configFile: string };
  attach(o: RevocationSyncOptions): Promise<RevocationSync>;
}
