/**
 * Hand-built tar bytes for the reader's edge cases: a single header block with chosen fields and
 * PAX records written by hand, so tests do not depend on the writer they are checking.
 */
import type { TarLimits } from "../../src/archive/tar-reader.ts";
import { writeChecksum } from "../../src/archive/_tar-fields.ts";
import { readItems } from "./tar-fixtures.ts";

/** The error a read of the whole archive (all bodies drained) ends with, or undefined. */
export async function readError(bytes: Uint8Array, chunk = 25_000, limits?: TarLimits): Promise<unknown> {
  try {
    await readItems(bytes, chunk, limits);
    return undefined;
  } catch (err) {
    return err;
  }
}

/** A tar of one header block (checksum fixed up after `edit`) followed by `rest`. */
export function rawHeader(edit: (block: Uint8Array) => void, rest = new Uint8Array(1024)): Uint8Array {
  const block = new Uint8Array(512);
  const put = (off: number, s: string) => block.set(new TextEncoder().encode(s), off);
  put(0, "file.txt");
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, "00000000000\0");
  put(136, "13240474000\0");
  put(156, "0");
  put(257, "ustar\x0000");
  edit(block);
  writeChecksum(block);
  const out = new Uint8Array(512 + rest.byteLength);
  out.set(block);
  out.set(rest, 512);
  return out;
}

/** One PAX record, its length prefix counting itself. */
export function paxRecord(key: string, value: string): string {
  const rest = new TextEncoder().encode(` ${key}=${value}\n`).byteLength;
  let len = rest + 1;
  while (String(len).length + rest !== len) len++;
  return `${len} ${key}=${value}\n`;
}

/** A PAX header block of type `typeflag` ('x' or 'g') and its data blocks. */
export function paxBlocks(records: string | Uint8Array, typeflag = "x"): Uint8Array {
  const data = typeof records === "string" ? new TextEncoder().encode(records) : records;
  const padded = new Uint8Array(Math.ceil(data.byteLength / 512) * 512);
  padded.set(data);
  return rawHeader((b) => {
    b.fill(0, 0, 100);
    b.set(new TextEncoder().encode("PaxHeaders/file.txt"), 0);
    b.set(new TextEncoder().encode(data.byteLength.toString(8).padStart(11, "0")), 124);
    b[156] = typeflag.charCodeAt(0);
  }, padded);
}

/** A PAX `x` header carrying `records`, then a plain "file.txt" entry and the end marker. */
export function paxArchive(records: string | Uint8Array): Uint8Array {
  return new Uint8Array([...paxBlocks(records), ...rawHeader(() => {})]);
}

/** A GNU long name ('L') or long link ('K') record carrying `name`, NUL-terminated. */
export function gnuLongBlocks(name: string, typeflag = "L"): Uint8Array {
  const data = new TextEncoder().encode(`${name}\0`);
  const out = rawHeader((b) => {
    b.fill(0, 0, 100);
    b.set(new TextEncoder().encode("././@LongLink"), 0);
    b.set(new TextEncoder().encode(data.byteLength.toString(8).padStart(11, "0")), 124);
    b[156] = typeflag.charCodeAt(0);
  }, new Uint8Array(Math.ceil(data.byteLength / 512) * 512));
  out.set(data, 512);
  return out;
}
