/**
 * PAX extended header records (`"%d %s=%s\n"`), kept as raw bytes: the length prefix counts bytes,
 * and xattr values are binary, so values are only decoded as text for the keys that are text.
 */
import type { Timespec } from "../sys/types.ts";

/** One record: the key as text, the value as the exact bytes from the archive. */
export type PaxRecord = [key: string, value: Uint8Array];

/** The key prefix for extended attributes, as written by star, GNU tar, libarchive and Go. */
export const XATTR_PREFIX = "SCHILY.xattr.";

const SPACE = 0x20;
const EQUALS = 0x3d;
const NEWLINE = 0x0a;
const keyDecoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Split PAX data into records. Returns a string describing the problem instead of throwing, so the
 * reader can put it in an error that names the archive offset.
 */
export function parsePaxRecords(data: Uint8Array): PaxRecord[] | string {
  const records: PaxRecord[] = [];
  let at = 0;
  while (at < data.byteLength) {
    // The decimal length covers the whole record, itself and the newline included.
    let len = 0;
    let i = at;
    while (i < data.byteLength && data[i]! >= 0x30 && data[i]! <= 0x39 && i - at < 16) {
      len = len * 10 + (data[i]! - 0x30);
      i++;
    }
    if (i === at || data[i] !== SPACE) return `malformed record at byte ${at}`;
    const end = at + len;
    if (len < 5 || end > data.byteLength || end <= i + 1) return `record length ${len} out of range`;
    if (data[end - 1] !== NEWLINE) return `record at byte ${at} does not end with a newline`;
    const body = data.subarray(i + 1, end - 1);
    const eq = body.indexOf(EQUALS);
    if (eq <= 0) return `record at byte ${at} has no key`;
    const keyBytes = body.subarray(0, eq);
    if (keyBytes.includes(0)) return `record at byte ${at} has a NUL in its key`;
    // Copy the value: the record buffer may be a view of the caller's stream chunk.
    records.push([keyDecoder.decode(keyBytes), body.slice(eq + 1)]);
    at = end;
  }
  return records;
}

/** Encode records as PAX data, in the given order. */
export function formatPaxRecords(records: readonly PaxRecord[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (const [key, value] of records) {
    const keyBytes = encoder.encode(key);
    const rest = keyBytes.byteLength + value.byteLength + 3; // " " "=" "\n"
    // The length includes its own digits: adding them can carry into one more digit.
    const digits = String(rest).length;
    let len = rest + digits;
    if (String(len).length > digits) len++;
    const record = new Uint8Array(len);
    const prefix = encoder.encode(`${len} `);
    record.set(prefix, 0);
    record.set(keyBytes, prefix.byteLength);
    record[prefix.byteLength + keyBytes.byteLength] = EQUALS;
    record.set(value, prefix.byteLength + keyBytes.byteLength + 1);
    record[len - 1] = NEWLINE;
    parts.push(record);
    total += len;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** A PAX decimal integer (`size`, `uid`, `gid`), or NaN when it is not one or not a safe integer. */
export function parsePaxInt(value: Uint8Array): number {
  if (value.byteLength === 0 || value.byteLength > 16) return NaN;
  let n = 0;
  for (const c of value) {
    if (c < 0x30 || c > 0x39) return NaN;
    n = n * 10 + (c - 0x30);
  }
  return n > Number.MAX_SAFE_INTEGER ? NaN : n;
}

/**
 * A PAX time: `[-]seconds[.fraction]`. Digits past nanoseconds are dropped (as Go does); negative
 * times normalise so that nsec stays in [0, 1e9).
 */
export function parsePaxTime(value: Uint8Array): Timespec | undefined {
  const text = keyDecoder.decode(value);
  const m = /^(-?)(\d{1,16})(?:\.(\d*))?$/.exec(text);
  if (!m) return undefined;
  const whole = Number(m[2]);
  if (whole > Number.MAX_SAFE_INTEGER) return undefined;
  const frac = (m[3] ?? "").slice(0, 9).padEnd(9, "0");
  const nsec = Number(frac);
  if (m[1] !== "-") return { sec: whole, nsec };
  // -1.25 is 1.25 s before the epoch: sec -2, nsec 0.75e9.
  if (nsec === 0) return { sec: whole === 0 ? 0 : -whole, nsec: 0 };
  return { sec: -whole - 1, nsec: 1e9 - nsec };
}

/** Format a time for a PAX `mtime` record, trailing zeros of the fraction dropped. */
export function formatPaxTime({ sec, nsec }: Timespec): string {
  let whole = sec;
  let frac = nsec;
  let sign = "";
  if (sec < 0) {
    sign = "-";
    // sec -2, nsec 0.75e9 is -1.25.
    if (frac === 0) whole = -sec;
    else {
      whole = -sec - 1;
      frac = 1e9 - nsec;
    }
  }
  if (frac === 0) return `${sign}${whole}`;
  return `${sign}${whole}.${String(frac).padStart(9, "0").replace(/0+$/, "")}`;
}

/** Text bytes for a record value. */
export function paxText(s: string): Uint8Array {
  return encoder.encode(s);
}
