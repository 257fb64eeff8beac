import { x509 } from "../../../pki/src/x509";
import { splitCrls } from "../../../pki/src/crl";

/** What the broker takes from a CRL file (every CRL in it): which serials it refuses and until when it is good. */
export interface CrlView {
  text: string;
  /** Revoked serials of every CRL in the file, lower-case hex without leading zeros. */
  serials: ReadonlySet<string>;
  /** The latest thisUpdate and the earliest nextUpdate: the file is as good as its stalest CRL. */
  thisUpdate: Date;
  nextUpdate: Date;
}

export class CrlFileError extends Error {}

export function viewCrl(text: string): CrlView {
  const blocks = splitCrls(text);
  if (blocks.length === 0) throw new CrlFileError("no X509 CRL block");
  const serials = new Set<string>();
  let thisUpdate = 0;
  let nextUpdate = Number.POSITIVE_INFINITY;
  for (const block of blocks) {
    let crl: x509.X509Crl;
    try {
      crl = new x509.X509Crl(block);
    } catch (err) {
      throw new CrlFileError(`unreadable CRL: ${err instanceof Error ? err.message : String(err)}`);
    }
    // A CRL without nextUpdate never lapses for OpenSSL; ours always carry one.
    nextUpdate = Math.min(nextUpdate, crl.nextUpdate?.getTime() ?? Number.POSITIVE_INFINITY);
    thisUpdate = Math.max(thisUpdate, crl.thisUpdate.getTime());
    for (const entry of crl.entries) serials.add(normalSerial(entry.serialNumber));
  }
  return { text, serials, thisUpdate: new Date(thisUpdate), nextUpdate: new Date(nextUpdate) };
}

export function normalSerial(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, "");
}

/**
 * A broker must read a fresh CRL before the one it loaded lapses (OpenSSL then refuses every client).
 * Due with a third of its lifetime left, the point at which `pki` re-signs, so one restart follows
 * each re-signing: every 60 days for the 90-day issuing CRL.
 */
export function reloadDue(loaded: CrlView, now: Date): boolean {
  const next = loaded.nextUpdate.getTime();
  if (!Number.isFinite(next)) return false;
  return next - now.getTime() < (next - loaded.thisUpdate.getTime()) / 3;
}

/** Serials in `current` that the broker's loaded CRL does not refuse yet. */
export function newlyRevoked(loaded: CrlView, current: CrlView): string[] {
  return [...current.serials].filter((s) => !loaded.serials.has(s));
}
