// ESP-ROM's little-endian CRC-32 (`esp_rom_crc32_le`, reflected polynomial 0xEDB88320), computed here
// because platform-neutral code can import neither node:zlib nor the SDK. With the seed 0xFFFFFFFF it
// equals Node's `zlib.crc32(bytes, 0xffffffff)` (the value ESP-IDF's NVS and this project's flash
// records store); the default seed 0 gives the ordinary zlib/IEEE CRC-32.
const TABLE = /* @__PURE__ */ (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 of `bytes`, continuing from `seed` (a previous result) so long inputs can be fed in pieces. */
export function crc32(bytes: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** The seed ESP-IDF uses (NVS, and this project's flash ring). */
export const ESP_CRC_SEED = 0xffffffff;
