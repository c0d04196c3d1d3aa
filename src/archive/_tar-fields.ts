/**
 * The ustar header block: field offsets, numeric and string field codecs, and the checksum.
 * Shared by the reader and the writer so both agree on the layout byte for byte.
 */

/** Tar works in 512-byte blocks: headers are one block, bodies are padded to a whole block. */
export const BLOCK = 512;

/** Byte offset and width of each ustar header field. */
export const FIELD = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const;

/** A field's name, for error messages. */
export type FieldName = keyof typeof FIELD;

/** Bytes of padding after `size` bytes of body to reach a block boundary. */
export function padding(size: number): number {
  const rem = size % BLOCK;
  return rem === 0 ? 0 : BLOCK - rem;
}

/** True when all 512 bytes are zero (an end-of-archive marker). */
export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

const SPACE = 0x20;
const NUL = 0;

/**
 * A numeric field: octal text, or GNU base-256 when the top bit of the first byte is set.
 * Returns NaN for garbage and for values beyond Number.MAX_SAFE_INTEGER, so the caller can name
 * the field in its error.
 */
export function parseNumeric(block: Uint8Array, [off, len]: readonly [number, number]): number {
  const first = block[off]!;
  if (first & 0x80) return parseBase256(block, off, len);
  let i = off;
  const end = off + len;
  // Writers pad on either side with NULs or spaces (old GNU tar used leading spaces).
  while (i < end && (block[i] === SPACE || block[i] === NUL)) i++;
  let value = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c < 0x30 || c > 0x37) break;
    value = value * 8 + (c - 0x30);
  }
  if (i < end) {
    // After a NUL the rest of the field is unused space (Go cuts there too); after a space only
    // more padding may follow. Anything else is a corrupt header, not a number.
    if (block[i] !== NUL) {
      for (; i < end; i++) if (block[i] !== SPACE && block[i] !== NUL) return NaN;
    }
  }
  return value > Number.MAX_SAFE_INTEGER ? NaN : value;
}

function parseBase256(block: Uint8Array, off: number, len: number): number {
  // Bit 6 of the first byte is the sign; negatives are two's complement, so invert to read them.
  const negative = (block[off]! & 0x40) !== 0;
  const inv = negative ? 0xff : 0;
  let value = 0;
  for (let i = 0; i < len; i++) {
    let c = block[off + i]! ^ inv;
    if (i === 0) c &= 0x7f;
    value = value * 256 + c;
    if (value > Number.MAX_SAFE_INTEGER) return NaN;
  }
  return negative ? -value - 1 : value;
}

/** Largest value an octal field of `len` bytes holds (len-1 digits and a NUL). */
export function octalMax(len: number): number {
  return 8 ** (len - 1) - 1;
}

/** Write `value` as zero-padded octal with a trailing NUL, or base-256 when it does not fit. */
export function formatNumeric(block: Uint8Array, [off, len]: readonly [number, number], value: number): void {
  if (value >= 0 && value <= octalMax(len)) {
    let v = value;
    for (let i = off + len - 2; i >= off; i--) {
      block[i] = 0x30 + (v % 8);
      v = Math.floor(v / 8);
    }
    block[off + len - 1] = NUL;
    return;
  }
  // GNU base-256: big-endian two's complement with the top bit of the first byte set.
  let v = value < 0 ? -value - 1 : value;
  const inv = value < 0 ? 0xff : 0;
  for (let i = off + len - 1; i > off; i--) {
    block[i] = (v % 256) ^ inv;
    v = Math.floor(v / 256);
  }
  block[off] = value < 0 ? 0xff : 0x80;
}

/** The two sums Go accepts: bytes as unsigned and as signed, the checksum field counted as spaces. */
export function checksums(block: Uint8Array): [unsigned: number, signed: number] {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? SPACE : block[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return [unsigned, signed];
}

/** Fill in the checksum field of a header block that is otherwise complete. */
export function writeChecksum(block: Uint8Array): void {
  const [sum] = checksums(block);
  // Six octal digits, NUL, space: the layout every tar since V7 writes.
  let v = sum;
  for (let i = 153; i >= 148; i--) {
    block[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  block[154] = NUL;
  block[155] = SPACE;
}

const utf8 = new TextDecoder();

/** Decode bytes as UTF-8, with a fast path for the common all-ASCII case. */
export function decodeText(bytes: Uint8Array): string {
  const n = bytes.byteLength;
  if (n <= 256) {
    let ascii = true;
    for (let i = 0; i < n; i++) {
      if (bytes[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    // Short ASCII names dominate layers; String.fromCharCode beats TextDecoder's call overhead there.
    if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }
  return utf8.decode(bytes);
}

/** A NUL-terminated (or field-filling) string field. */
export function parseString(block: Uint8Array, [off, len]: readonly [number, number]): string {
  let end = off;
  const max = off + len;
  while (end < max && block[end] !== NUL) end++;
  return end === off ? "" : decodeText(block.subarray(off, end));
}

/**
 * Copy an ASCII string into a field, NUL-terminated when shorter. Returns false (writing nothing)
 * when `s` is longer than the field or not ASCII, so the caller falls back to a PAX record.
 */
export function formatAscii(block: Uint8Array, [off, len]: readonly [number, number], s: string): boolean {
  if (s.length > len) return false;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  for (let i = 0; i < s.length; i++) block[off + i] = s.charCodeAt(i);
  if (s.length < len) block[off + s.length] = NUL;
  return true;
}

/** True when every UTF-16 unit of `s` is ASCII (so its UTF-8 byte length equals `s.length`). */
export function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}
