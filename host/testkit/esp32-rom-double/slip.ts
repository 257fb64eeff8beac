/** SLIP framing as the ESP32 ROM loader speaks it: C0 … C0, C0 → DB DC, DB → DB DD. */
const END = 0xc0;
const ESC = 0xdb;
const ESC_END = 0xdc;
const ESC_ESC = 0xdd;

export function slipEncode(frame: Uint8Array): Uint8Array {
  const out: number[] = [END];
  for (const b of frame) {
    if (b === END) out.push(ESC, ESC_END);
    else if (b === ESC) out.push(ESC, ESC_ESC);
    else out.push(b);
  }
  out.push(END);
  return Uint8Array.from(out);
}

/** Reassembles frames from a byte stream; bytes outside a frame (line noise) are dropped like the ROM does. */
export class SlipDecoder {
  #frame: number[] | null = null;
  #escaping = false;

  push(bytes: Uint8Array): Uint8Array[] {
    const frames: Uint8Array[] = [];
    for (const b of bytes) {
      if (this.#frame === null) {
        if (b === END) this.#frame = [];
        continue;
      }
      if (this.#escaping) {
        this.#escaping = false;
        if (b === ESC_END) this.#frame.push(END);
        else if (b === ESC_ESC) this.#frame.push(ESC);
        else this.#frame = null; // invalid escape: drop the frame
        continue;
      }
      if (b === ESC) this.#escaping = true;
      else if (b === END) {
        // An empty frame is the END that opens the next one.
        if (this.#frame.length > 0) {
          frames.push(Uint8Array.from(this.#frame));
          this.#frame = null;
        }
      } else this.#frame.push(b);
    }
    return frames;
  }
}
