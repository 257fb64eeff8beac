// RSA-2048 key generation for one worker thread (plain JavaScript: Node 20 cannot load a TypeScript file
// in a worker without a loader, and tsx/vitest do not pass theirs on). See rsa-pool.ts for why this exists.
//
// FIPS 186-5 B.3.3 (random probable primes): each prime is 1024 random bits with the top two set (so
// n has exactly 2048 bits and p, q >= sqrt(2)*2^1023), coprime e - 1, tested by trial division against
// the odd primes below 2^16, one Miller-Rabin round to base 2, then MR_ROUNDS rounds with random
// bases (Table B.1 asks for 5 for 2^-112). |p - q| > 2^924 and d > 2^1024 as B.3.1 requires.
//
// The modular exponentiations run inside OpenSSL: an RSA public-key operation without padding
// computes base^e mod n, so with n = candidate and e = the Miller-Rabin exponent it is exactly the
// Miller-Rabin step, at OpenSSL's speed instead of JavaScript BigInt's (about 30x slower).
import { Buffer } from "node:buffer";
import { parentPort } from "node:worker_threads";
import {
  constants,
  createPrivateKey,
  createPublicKey,
  publicEncrypt,
  randomBytes,
  sign,
  verify,
} from "node:crypto";

const PRIME_BYTES = 128;
const MR_ROUNDS = 5;
const E = 65537n;
const WINDOW = 8192;
const SMALL_PRIMES = oddPrimesBelow(1 << 16);

function oddPrimesBelow(limit) {
  const composite = new Uint8Array(limit);
  const out = [];
  for (let i = 3; i < limit; i += 2) {
    if (composite[i]) continue;
    out.push(i);
    for (let j = i * i; j < limit; j += 2 * i) composite[j] = 1;
  }
  return out;
}

const toBig = (buf) => BigInt(`0x${Buffer.from(buf).toString("hex")}`);
function toBytes(x, len) {
  return Buffer.from(x.toString(16).padStart(len * 2, "0"), "hex");
}
function b64u(x) {
  let hex = x.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return Buffer.from(hex, "hex").toString("base64url");
}

function modPow(base, exponent, modulus) {
  const key = createPublicKey({ key: { kty: "RSA", n: b64u(modulus), e: b64u(exponent) }, format: "jwk" });
  return toBig(publicEncrypt({ key, padding: constants.RSA_NO_PADDING }, toBytes(base, PRIME_BYTES)));
}

function isStrongProbablePrime(n, d, s, a) {
  let x = modPow(a, d, n);
  if (x === 1n || x === n - 1n) return true;
  for (let r = 1; r < s; r++) {
    x = (x * x) % n;
    if (x === n - 1n) return true;
    if (x === 1n) return false;
  }
  return false;
}

function randomBase(n) {
  // Uniform enough in [2, n - 2]: 64 extra random bits make the modulo bias negligible.
  return (toBig(randomBytes(PRIME_BYTES + 8)) % (n - 3n)) + 2n;
}

function passesMillerRabin(n) {
  let d = n - 1n;
  let s = 0;
  while ((d & 1n) === 0n) {
    d >>= 1n;
    s++;
  }
  if (!isStrongProbablePrime(n, d, s, 2n)) return false;
  for (let i = 0; i < MR_ROUNDS; i++) if (!isStrongProbablePrime(n, d, s, randomBase(n))) return false;
  return true;
}

function generatePrime() {
  for (;;) {
    const start = randomBytes(PRIME_BYTES);
    start[0] |= 0xc0;
    start[PRIME_BYTES - 1] |= 1;
    const base = toBig(start);
    // Sieve the window [base, base + WINDOW) once instead of dividing every candidate.
    const composite = new Uint8Array(WINDOW);
    for (const p of SMALL_PRIMES) {
      const r = Number(base % BigInt(p));
      for (let j = r === 0 ? 0 : p - r; j < WINDOW; j += p) composite[j] = 1;
    }
    for (let delta = 0; delta < WINDOW; delta += 2) {
      if (composite[delta]) continue;
      const c = base + BigInt(delta);
      if (c >> 1024n) break; // ran past 1024 bits
      if ((c - 1n) % E === 0n) continue;
      if (passesMillerRabin(c)) return c;
    }
  }
}

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}
function modInverse(a, m) {
  let [r0, r1, s0, s1] = [a % m, m, 1n, 0n];
  while (r1) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new Error("not invertible");
  return ((s0 % m) + m) % m;
}

function rsaKey() {
  for (;;) {
    let p = generatePrime();
    let q = generatePrime();
    if (p < q) [p, q] = [q, p];
    if (p - q <= 1n << 924n) continue;
    const n = p * q;
    if (n >> 2047n !== 1n) continue;
    const lambda = ((p - 1n) * (q - 1n)) / gcd(p - 1n, q - 1n);
    const d = modInverse(E, lambda);
    if (d <= 1n << 1024n) continue;
    const jwk = {
      kty: "RSA",
      n: b64u(n),
      e: b64u(E),
      d: b64u(d),
      p: b64u(p),
      q: b64u(q),
      dp: b64u(d % (p - 1n)),
      dq: b64u(d % (q - 1n)),
      qi: b64u(modInverse(q, p)),
    };
    const key = createPrivateKey({ key: jwk, format: "jwk" });
    const pub = createPublicKey(key);
    // Pairwise consistency test (FIPS 140): a key that cannot verify its own signature is never handed out.
    const probe = randomBytes(32);
    if (!verify("sha256", probe, pub, sign("sha256", probe, key)))
      throw new Error("RSA pairwise consistency test failed");
    return {
      pkcs8: key.export({ type: "pkcs8", format: "der" }),
      spki: pub.export({ type: "spki", format: "der" }),
    };
  }
}

parentPort.on("message", (msg) => {
  try {
    const { pkcs8, spki } = rsaKey();
    const a = new Uint8Array(pkcs8).buffer;
    const b = new Uint8Array(spki).buffer;
    parentPort.postMessage({ id: msg.id, pkcs8: a, spki: b }, [a, b]);
  } catch (err) {
    parentPort.postMessage({ id: msg.id, error: err instanceof Error ? err.message : String(err) });
  }
});
