// Backoff jitter must differ between boards. XS's Math.random was seen to repeat the same sequence on
// every start of the simulator, and a fleet of boards with the same sequence would retry in lockstep
// after a broker outage, which is what jitter is there to prevent. Mixing in a per-board, per-boot
// stream keeps the draws apart whatever the platform's generator does.
import type { RandomSource } from "./services";

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Uniform in [0, 1): the platform's draw plus a xorshift32 stream seeded from device id and boot, mod 1. */
export function deviceRandom(base: RandomSource, deviceId: string, boot: number): RandomSource {
  let state = (fnv1a(`${deviceId}/${boot}`) ^ 0x9e3779b9) >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    const mixed = base() + state / 0x1_0000_0000;
    return mixed >= 1 ? mixed - 1 : mixed;
  };
}
