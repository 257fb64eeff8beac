import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { access, constants, mkdir, readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join, resolve } from "node:path";
import { userInfo } from "node:os";
import { writeFileAtomic } from "../../../shared/state-dir";
import { loadTemplates, renderBrokerConfig } from "./config";
import { findFreePort } from "../net/free-port";
import { waitForTls } from "./wait-tls";
import { reapOnExit } from "../process/reap-on-exit";

/**
 * The files of the fleet PKI the broker needs. `PkiPaths` from pki/src/index.ts has this
 * shape (and more), so it can be passed as is.
 */
export interface BrokerPki {
  /** CA certificate(s) that issue client certificates; any CA in here is trusted. */
  caBundle: string;
  /** PEM CRL of the issuing CA; read at broker start only. */
  crl: string;
  broker: { cert: string; key: string };
}

export interface StartMosquittoOptions {
  pki: BrokerPki;
  /** 0 or undefined: a free loopback port is chosen. */
  port?: number;
  /** Default 127.0.0.1. */
  bind?: string;
  /** Rendered config, ACL and the persistence database live here. */
  dataDir: string;
  /** CN of the ingest service certificate; default "ingest". */
  ingestIdentity?: string;
  /**
   * Client id := certificate CN (use_username_as_clientid), so no client can take over
   * another's session. Default true; false is unsafe (any board can take over the ingest's
   * session) and only for tests that need several connections on one certificate.
   * See infra/mosquitto/mosquitto.conf.template.
   */
  bindClientIdToIdentity?: boolean;
  /** Broker log is appended here; otherwise only the last lines are kept (logTail). */
  logFile?: string;
  /** Every broker log line, e.g. for a foreground CLI. */
  onLogLine?: (line: string) => void;
  /** Load the dynamic-security plugin with this file (see host/src/broker/revocation-sync.ts). */
  dynsec?: { plugin: string; configFile: string };
  /** Default: $MOSQUITTO_BIN or /usr/sbin/mosquitto (Debian). */
  binary?: string;
  readyTimeoutMs?: number;
}

export interface MosquittoHandle {
  host: string;
  port: number;
  /** Current broker process id; changes on restart. */
  pid: number;
  /** mqtts://HOST:PORT */
  url: string;
  dataDir: string;
  configFile: string;
  /** The last broker log lines (newest last), for diagnostics and tests. */
  logTail(): string[];
  stop(): Promise<void>;
  /**
   * Stops (the database is saved on a clean stop) and starts again on the same port with
   * the same persistence. This is how a new CRL takes effect: mosquitto reads it at start only.
   */
  restart(): Promise<void>;
  /** Resolves when the broker process exits, for whatever reason. */
  exited(): Promise<number | null>;
}

/** Connections are capped by the open-file limit; 1024 (the usual soft limit) is too few for a fleet. */
export const OPEN_FILE_TARGET = 20000;
const LOG_TAIL_LINES = 400;
const STOP_TIMEOUT_MS = 10_000;

/**
 * Raises the soft open-file limit (never lowers it), falls back to the hard limit, then execs
 * `$1 -c $2` (through setpriv when present), so the PID is the broker's. Node raises its own soft limit at start, but a shell or service manager that
 * runs this launcher may not have. Exported for its test.
 */
export const LAUNCH_SCRIPT = [
  `cur=$(ulimit -n)`,
  `if [ "$cur" != unlimited ] && [ "$cur" -lt ${OPEN_FILE_TARGET} ]; then`,
  `  ulimit -n ${OPEN_FILE_TARGET} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null`,
  `fi`,
  // The broker runs in its own process group (see spawn); with setpriv (util-linux) it also
  // gets SIGTERM when its launcher dies, even by SIGKILL, instead of lingering on the port.
  `if command -v setpriv >/dev/null 2>&1; then exec setpriv --pdeathsig TERM -- "$1" -c "$2"; fi`,
  `exec "$1" -c "$2"`,
].join("\n");

export function defaultMosquittoBinary(): string {
  return process.env.MOSQUITTO_BIN ?? "/usr/sbin/mosquitto";
}

function urlHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

/** Wildcard binds are reached through loopback. */
function connectHost(bind: string): string {
  if (bind === "0.0.0.0") return "127.0.0.1";
  if (bind === "::") return "::1";
  return bind;
}

class LogTail {
  readonly lines: string[] = [];
  private partial = "";
  constructor(
    private readonly file: WriteStream | undefined,
    private readonly onLine: ((line: string) => void) | undefined,
  ) {}
  push(chunk: Buffer): void {
    this.file?.write(chunk);
    const text = this.partial + chunk.toString("utf8");
    const parts = text.split("\n");
    this.partial = parts.pop() ?? "";
    for (const line of parts) {
      this.lines.push(line);
      this.onLine?.(line);
    }
    if (this.lines.length > LOG_TAIL_LINES) this.lines.splice(0, this.lines.length - LOG_TAIL_LINES);
  }
}

async function assertExecutable(binary: string): Promise<void> {
  try {
    await access(binary, constants.X_OK);
  } catch {
    throw new Error(
      `mosquitto binary not found or not executable: ${binary} (Debian: apt-get install mosquitto)`,
    );
  }
}

async function assertReadable(what: string, path: string): Promise<void> {
  try {
    await access(path, constants.R_OK);
  } catch {
    throw new Error(`broker ${what} file missing or unreadable: ${path}`);
  }
}

/** OpenSSL reads only the "X509 CRL" PEM label; anything else stops mosquitto with a vague error. */
async function assertCrlReadableByOpenSsl(path: string): Promise<void> {
  const text = await readFile(path, "utf8");
  if (!text.includes("-----BEGIN X509 CRL-----")) {
    throw new Error(
      `CRL ${path} has no "-----BEGIN X509 CRL-----" block (mosquitto/OpenSSL read only that PEM label)`,
    );
  }
}

export async function startMosquitto(o: StartMosquittoOptions): Promise<MosquittoHandle> {
  const binary = o.binary ?? defaultMosquittoBinary();
  await assertExecutable(binary);
  await assertReadable("CA bundle", o.pki.caBundle);
  await assertReadable("CRL", o.pki.crl);
  await assertReadable("certificate", o.pki.broker.cert);
  await assertReadable("private key", o.pki.broker.key);
  await assertCrlReadableByOpenSsl(o.pki.crl);

  const bind = o.bind ?? "127.0.0.1";
  const host = connectHost(bind);
  const dataDir = resolve(o.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const configFile = join(dataDir, "mosquitto.conf");
  const aclFile = join(dataDir, "acl");
  const templates = await loadTemplates();
  const ca = await readFile(o.pki.caBundle);
  const logStream = o.logFile ? createWriteStream(o.logFile, { flags: "a" }) : undefined;
  const log = new LogTail(logStream, o.onLogLine);
  const readyTimeoutMs = o.readyTimeoutMs ?? 15_000;

  const render = async (port: number): Promise<void> => {
    const rendered = renderBrokerConfig(templates, {
      user: userInfo().username,
      port,
      bind,
      caFile: resolve(o.pki.caBundle),
      certFile: resolve(o.pki.broker.cert),
      keyFile: resolve(o.pki.broker.key),
      crlFile: resolve(o.pki.crl),
      aclFile,
      persistenceDir: dataDir,
      logDest: "stderr",
      ingestIdentity: o.ingestIdentity ?? "ingest",
      bindClientIdToIdentity: o.bindClientIdToIdentity ?? true,
      dynsec: o.dynsec,
    });
    await writeFileAtomic(aclFile, rendered.acl, 0o600);
    await writeFileAtomic(configFile, rendered.conf, 0o600);
  };

  let child: ChildProcess | undefined;
  let exitPromise: Promise<number | null> = Promise.resolve(null);

  const spawnOnce = async (port: number): Promise<void> => {
    const proc = spawn("sh", ["-c", LAUNCH_SCRIPT, "sh", binary, configFile], {
      stdio: ["ignore", "pipe", "pipe"],
      // Own process group: a Ctrl-C in the terminal reaches only the launcher, which then
      // stops the broker in order (so the broker never "dies unexpectedly" mid-shutdown).
      detached: true,
    });
    const reaped = reapOnExit(proc);
    let dead = false;
    exitPromise = new Promise((res) => {
      proc.once("exit", (code, signal) => {
        dead = true;
        reaped.forget();
        res(code ?? (signal ? null : 0));
      });
    });
    proc.once("error", (err) => log.push(Buffer.from(`spawn error: ${err.message}\n`)));
    proc.stdout?.on("data", (c: Buffer) => log.push(c));
    proc.stderr?.on("data", (c: Buffer) => log.push(c));
    if (proc.pid === undefined) throw new Error("could not spawn mosquitto");
    child = proc;
    try {
      await waitForTls({ host, port, ca, timeoutMs: readyTimeoutMs, isDead: () => dead });
    } catch (err) {
      await killAndWait(proc, exitPromise);
      const tail = log.lines.filter((l) => /error|unable|warning/i.test(l)).slice(-5);
      const msg = err instanceof Error ? err.message : String(err);
      throw new Error(`mosquitto did not start: ${msg}${tail.length ? `\n${tail.join("\n")}` : ""}`);
    }
  };

  let port = o.port ?? 0;
  const autoPort = port === 0;
  for (let attempt = 1; ; attempt++) {
    if (autoPort) port = await findFreePort(bind);
    await render(port);
    const linesBefore = log.lines.length;
    try {
      await spawnOnce(port);
      break;
    } catch (err) {
      const inUse = log.lines.slice(linesBefore).some((l) => /address already in use/i.test(l));
      if (autoPort && inUse && attempt < 5) continue;
      logStream?.end();
      throw err;
    }
  }

  let stopped = false;
  const handle: MosquittoHandle = {
    host,
    port,
    get pid(): number {
      return child?.pid ?? -1;
    },
    url: `mqtts://${urlHost(host)}:${port}`,
    dataDir,
    configFile,
    logTail: () => [...log.lines],
    exited: () => exitPromise,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child) await killAndWait(child, exitPromise);
      logStream?.end();
    },
    async restart() {
      if (stopped) throw new Error("restart after stop");
      if (child) await killAndWait(child, exitPromise);
      await spawnOnce(port);
    },
  };
  return handle;
}

/** SIGTERM lets mosquitto save its database; SIGKILL only if it hangs. */
async function killAndWait(proc: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    exited.then(() => false),
    new Promise<boolean>((r) => {
      timer = setTimeout(() => r(true), STOP_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    proc.kill("SIGKILL");
    await exited;
  }
}
