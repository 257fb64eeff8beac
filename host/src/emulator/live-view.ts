/**
 * The emulator's terminal view: a few lines redrawn in place about once a second on a terminal, or a plain
 * progress line every few seconds when output goes to a file or CI log.
 */
import type { LiveSnapshot } from "./live-snapshot";

const f1 = (x: number | undefined): string =>
  x === undefined || Number.isNaN(x) ? "-" : x < 10 ? x.toFixed(2) : x.toFixed(0);

/** End-to-end latency comes from millisecond device timestamps. */
const e2e = (x: number | undefined): string => (x !== undefined && x < 1 ? "<1 ms" : `${f1(x)} ms`);

/** How the emulator announces steady state; `npm run bench -- emulate` starts its end-to-end window on it. */
export const STEADY_STATE_LINE = "steady state: every board connected and its backlog sent";

export function renderLines(s: LiveSnapshot): string[] {
  const failures = s.handshakeFailures + s.connectFailures;
  const lines = [
    `t=${s.elapsedS.toFixed(0)}s  boards ${s.connected}/${s.target} connected` +
      (failures ? `  (${failures} connect failures)` : ""),
    `  ${s.msgPerS.toFixed(0)} msg/s   PUBACK p50 ${f1(s.pubackP50Ms)} ms  p99 ${f1(s.pubackP99Ms)} ms   queued on boards ${s.queued}`,
  ];
  if (s.e2eP50Ms !== undefined || s.inTransit !== undefined)
    lines.push(
      `  end-to-end p50 ${e2e(s.e2eP50Ms)}  p99 ${e2e(s.e2eP99Ms)}   in transit ${s.inTransit ?? "-"}   duplicates ${s.duplicates ?? "-"}`,
    );
  lines.push(
    `  faults injected ${s.faultsInjected}${s.lastFaults.length ? `   last: ${s.lastFaults.join("; ")}` : ""}`,
  );
  return lines;
}

export class LiveView {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  #drawn = 0;
  #lastPlain = 0;

  constructor(out: NodeJS.WriteStream = process.stdout) {
    this.#out = out;
    this.#tty = out.isTTY === true;
  }

  update(s: LiveSnapshot): void {
    const lines = renderLines(s);
    if (this.#tty) {
      const width = this.#out.columns || 120;
      let text = this.#drawn > 0 ? `\x1b[${this.#drawn}A` : "";
      for (const l of lines) text += `\x1b[2K${l.slice(0, width - 1)}\n`;
      this.#out.write(text);
      this.#drawn = lines.length;
    } else if (s.elapsedS - this.#lastPlain >= 5 || this.#lastPlain === 0) {
      this.#lastPlain = Math.max(s.elapsedS, 0.001);
      this.#out.write(lines.map((l) => l.trim()).join(" | ") + "\n");
    }
  }

  /** A one-off line (an event, not a figure): printed above the drawing, which is redrawn below it. */
  note(line: string): void {
    if (this.#tty && this.#drawn > 0) this.#out.write(`\x1b[${this.#drawn}A\x1b[0J`);
    this.#drawn = 0;
    this.#out.write(`${line}\n`);
  }

  /** Leaves the last drawing on screen; later output starts below it. */
  finish(): void {
    this.#drawn = 0;
  }
}
