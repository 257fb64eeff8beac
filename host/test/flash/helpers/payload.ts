/** A reading's payload as a function of (boot, seq), 257 bytes like a sealed reading, so recovery can be checked byte for byte. */
export function payloadFor(boot: number, seq: number): Uint8Array {
  const b = new Uint8Array(257);
  for (let i = 0; i < b.length; i++) b[i] = (boot * 31 + seq * 7 + i) & 0xff;
  return b;
}
