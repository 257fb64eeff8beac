// UTF-8 without TextEncoder/TextDecoder: XS on the ESP32 has neither as a global,
// and this module must run unchanged on the board and in Node.

export function encodeUtf8(text: string): Uint8Array {
  // Readings are ASCII: one pass straight into the result, with no intermediate array (this runs for every
  // message, on the board and a few thousand times a second in the emulator).
  const n = text.length;
  const ascii = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return concatBytes(ascii.subarray(0, i), encodeUtf8General(text, i));
    ascii[i] = code;
  }
  return ascii;
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Any text from index `from`: measures, then writes into an exactly sized array. */
function encodeUtf8General(text: string, from: number): Uint8Array {
  let size = 0;
  forEachCodePoint(text, from, (code) => {
    size += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
  });
  const out = new Uint8Array(size);
  let o = 0;
  forEachCodePoint(text, from, (code) => {
    if (code < 0x80) out[o++] = code;
    else if (code < 0x800) {
      out[o++] = 0xc0 | (code >> 6);
      out[o++] = 0x80 | (code & 0x3f);
    } else if (code < 0x10000) {
      out[o++] = 0xe0 | (code >> 12);
      out[o++] = 0x80 | ((code >> 6) & 0x3f);
      out[o++] = 0x80 | (code & 0x3f);
    } else {
      out[o++] = 0xf0 | (code >> 18);
      out[o++] = 0x80 | ((code >> 12) & 0x3f);
      out[o++] = 0x80 | ((code >> 6) & 0x3f);
      out[o++] = 0x80 | (code & 0x3f);
    }
  });
  return out;
}

/** Code points of text[from..], pairing surrogates; a lone surrogate becomes U+FFFD. */
function forEachCodePoint(text: string, from: number, fn: (code: number) => void): void {
  for (let i = from; i < text.length; i++) {
    let code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        i++;
      }
    }
    if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;
    fn(code);
  }
}

/** Strict decoder: returns undefined for any malformed sequence instead of inventing U+FFFD. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  let out = "";
  let i = 0;
  while (i < bytes.length) {
    const b0 = bytes[i]!;
    let code: number;
    let need: number;
    let min: number;
    if (b0 < 0x80) {
      code = b0;
      need = 0;
      min = 0;
    } else if ((b0 & 0xe0) === 0xc0) {
      code = b0 & 0x1f;
      need = 1;
      min = 0x80;
    } else if ((b0 & 0xf0) === 0xe0) {
      code = b0 & 0x0f;
      need = 2;
      min = 0x800;
    } else if ((b0 & 0xf8) === 0xf0) {
      code = b0 & 0x07;
      need = 3;
      min = 0x10000;
    } else return undefined;
    for (let k = 1; k <= need; k++) {
      const b = bytes[i + k];
      if (b === undefined || (b & 0xc0) !== 0x80) return undefined;
      code = (code << 6) | (b & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return undefined;
    out += String.fromCodePoint(code);
    i += need + 1;
  }
  return out;
}
