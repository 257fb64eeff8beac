// Child process for the kill test: mounts the ring over a file flash and appends readings of one boot as
// fast as it can, reporting each seq on stdout only after append() returned (i.e. once it is durable in
// the file), until it is killed.
import { writeSync } from "node:fs";
import FlashRing from "../../../../firmware/src/outbox/flash-ring";
import FileFlashArea from "../../../src/flash/file-flash-area";
import { payloadFor } from "./payload";

const [path, sectors, boot] = process.argv.slice(2);
const ring = new FlashRing({ flash: new FileFlashArea({ path: path!, sectors: Number(sectors) }) });
const pause = new Int32Array(new SharedArrayBuffer(4));
/** stdout is a non-blocking pipe: when the parent reads slowly (a loaded machine) a write fails with EAGAIN. */
function report(line: string): void {
  for (;;) {
    try {
      writeSync(1, line); // under PIPE_BUF: all or nothing
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
      Atomics.wait(pause, 0, 0, 5);
    }
  }
}

report(`ready ${ring.unconfirmed}\n`);
for (let seq = 0; ; seq++) {
  ring.append(Number(boot), seq, payloadFor(Number(boot), seq));
  report(`${seq}\n`);
}
