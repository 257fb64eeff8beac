import { access, constants, readFile } from "node:fs/promises";
import { refreshCrlIfDue } from "../../../pki/src/dev";
import { pkiPaths } from "../../../pki/src/paths";
import { CrlFileError, newlyRevoked, reloadDue, viewCrl, type CrlView } from "./crl-view";

/** What the broker could not enforce without reading the new CRL, i.e. without a restart. */
export interface RevocationOutcome {
  restartNeeded: boolean;
}

export interface CrlKeeperOptions {
  crlPath: string;
  /**
   * Re-signs the CRL file if it is due (pki's refreshCrlIfDue). Absent when the launcher holds no CA
   * key (an external --crl): then it only warns before the loaded CRL lapses.
   */
  resignIfDue?: (now: Date) => Promise<boolean>;
  /** A graceful broker restart: mosquitto reads its crlfile at start only (SIGHUP does not reload it). */
  restart: (why: string) => Promise<void>;
  /**
   * New serials on the CRL that the running broker does not refuse yet. The handler cuts off what it
   * can without a restart (host/src/broker/revocation-sync.ts) and says whether a restart is still
   * needed; without a handler every new revocation restarts the broker.
   */
  onNewRevocations?: (serials: string[], current: CrlView) => Promise<RevocationOutcome>;
  log: (line: string) => void;
  /** How often the CRL file is read for new revocations. Default 1 s. */
  pollMs?: number;
  /** How often re-signing is considered. Default 1 h (re-signing itself happens every 60 days). */
  resignEveryMs?: number;
  now?: () => Date;
}

/**
 * Keeps a running broker's CRL current: re-signs the CRL before it lapses, restarts the broker onto a
 * CRL it has not loaded when the loaded one is due, and hands new revocations to `onNewRevocations`.
 * Ticks never overlap; a failed tick is logged and counted, and the next one tries again.
 */
export class CrlKeeper {
  #loaded: CrlView;
  #seen: string;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #lastResign = 0;
  #lastLapseWarning = 0;
  #failures = 0;
  readonly #o: CrlKeeperOptions;

  /** `loaded` is the CRL as read just before the broker started (so nothing that changed since is missed). */
  constructor(loaded: CrlView, o: CrlKeeperOptions) {
    this.#loaded = loaded;
    this.#seen = loaded.text;
    this.#o = o;
    this.#lastResign = (o.now ?? (() => new Date()))().getTime();
  }

  /** The CRL file as read before a broker start, re-signed first if it is due. */
  static async prepare(crlPath: string, resignIfDue?: (now: Date) => Promise<boolean>): Promise<CrlView> {
    await resignIfDue?.(new Date());
    return viewCrl(await readFile(crlPath, "utf8"));
  }

  get loaded(): CrlView {
    return this.#loaded;
  }

  get failures(): number {
    return this.#failures;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.tick(), this.#o.pollMs ?? 1000);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** One check; concurrent calls share the running one. */
  tick(): Promise<void> {
    this.#running ??= this.#check()
      .catch((err: unknown) => {
        this.#failures += 1;
        this.#o.log(
          `CRL check failed (${this.#failures}): ${err instanceof Error ? err.message : String(err)}`,
        );
      })
      .finally(() => {
        this.#running = undefined;
      });
    return this.#running;
  }

  async #check(): Promise<void> {
    const now = (this.#o.now ?? (() => new Date()))();
    if (this.#o.resignIfDue && now.getTime() - this.#lastResign >= (this.#o.resignEveryMs ?? 3_600_000)) {
      this.#lastResign = now.getTime();
      if (await this.#o.resignIfDue(now)) this.#o.log("CRL re-signed (a third of its lifetime was left)");
    }
    const text = await readFile(this.#o.crlPath, "utf8");
    const due = reloadDue(this.#loaded, now);
    if (text === this.#seen && !due) return;
    let current: CrlView;
    try {
      current = viewCrl(text);
    } catch (err) {
      if (err instanceof CrlFileError && text !== this.#seen) {
        this.#seen = text;
        throw new Error(`${this.#o.crlPath}: ${err.message}; the broker keeps the CRL it has`);
      }
      throw err;
    }
    this.#seen = text;
    const fresh = newlyRevoked(this.#loaded, current);
    let restartFor: string | undefined;
    if (fresh.length > 0) {
      const outcome = this.#o.onNewRevocations
        ? await this.#o.onNewRevocations(fresh, current)
        : { restartNeeded: true };
      if (outcome.restartNeeded) restartFor = `${fresh.length} newly revoked certificate(s)`;
    }
    if (due) {
      if (current.nextUpdate > this.#loaded.nextUpdate) restartFor ??= "the loaded CRL is due for renewal";
      else if (now.getTime() - this.#lastLapseWarning > 86_400_000) {
        this.#lastLapseWarning = now.getTime();
        this.#o.log(
          `WARNING: the broker's CRL lapses at ${this.#loaded.nextUpdate.toISOString()} and ${this.#o.crlPath} is no newer: re-sign it (npm run pki -- crl), or every board will be refused`,
        );
      }
    }
    if (restartFor) {
      this.#o.log(`restarting the broker to load the current CRL: ${restartFor}`);
      await this.#o.restart(restartFor);
      this.#loaded = current;
    }
  }
}

/** Re-signing through the state folder's CA, when its key is on this host (not for an external --crl). */
export async function localCrlResigner(
  stateDir: string,
): Promise<((now: Date) => Promise<boolean>) | undefined> {
  try {
    await access(pkiPaths(stateDir).issuingKey, constants.R_OK);
  } catch {
    return undefined;
  }
  return (now) => refreshCrlIfDue(stateDir, now);
}
