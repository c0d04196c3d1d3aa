/** CRC-32C (Castagnoli), as the kernel's `crc32c()`: reflected, no final inversion. */

const _TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/**
 * Continue a CRC-32C from `seed` over `data` (EROFS seeds with ~0 and stores the raw result).
 * @example
 * crc32c(0xffffffff, new TextEncoder().encode("123456789")) ^ 0xffffffff; // 0xe3069283
 */
export function crc32c(seed: number, data: Uint8Array): number {
  let crc = seed >>> 0;
  for (let i = 0; i < data.byteLength; i++) crc = _TABLE[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return crc >>> 0;
}
