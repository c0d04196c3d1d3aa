/**
 * Encoding one `TarHeader` as ustar, preceded by a PAX `x` record only for what ustar cannot hold
 * (long or non-ASCII names, big numbers, xattrs, sub-second mtimes), so ordinary entries stay one
 * block and any tar since 1988 reads them.
 */
import { InvalidLayerError } from "../core/errors.ts";
import type { TarEntryType, TarHeader } from "./tar-types.ts";
import { BLOCK, FIELD, formatAscii, formatNumeric, isAscii, octalMax, padding, writeChecksum } from "./_tar-fields.ts";
import { formatPaxRecords, formatPaxTime, type PaxRecord, paxText, XATTR_PREFIX } from "./_tar-pax.ts";

const TYPEFLAGS: Record<TarEntryType, string> = {
  file: "0",
  link: "1",
  symlink: "2",
  char: "3",
  block: "4",
  directory: "5",
  fifo: "6",
};

/** The name a header is written under: directories end with "/" as tar tools expect. */
export function archiveName(header: TarHeader): string {
  return header.type === "directory" && !header.name.endsWith("/") ? `${header.name}/` : header.name;
}

/** The header blocks for `header`: an optional PAX record (header, data, padding) and the ustar block. */
export function encodeHeader(header: TarHeader): Uint8Array {
  validate(header);
  const name = archiveName(header);
  const pax: PaxRecord[] = [];
  const block = new Uint8Array(BLOCK);

  if (!formatAscii(block, FIELD.name, name) && !splitName(block, name)) {
    pax.push(["path", paxText(name)]);
    formatAscii(block, FIELD.name, asciiFallback(name, 100));
  }
  if (!formatAscii(block, FIELD.linkname, header.linkname)) {
    pax.push(["linkpath", paxText(header.linkname)]);
    formatAscii(block, FIELD.linkname, asciiFallback(header.linkname, 100));
  }
  // Numbers too big for octal also go in base-256 in the block, so readers without PAX agree on the size.
  for (const key of ["size", "uid", "gid"] as const) {
    const value = header[key];
    if (value > octalMax(FIELD[key][1])) pax.push([key, paxText(String(value))]);
    formatNumeric(block, FIELD[key], value);
  }
  for (const key of ["uname", "gname"] as const) {
    const value = header[key] ?? "";
    if (!formatAscii(block, FIELD[key], value)) {
      pax.push([key, paxText(value)]);
      formatAscii(block, FIELD[key], asciiFallback(value, 32));
    }
  }
  const { sec, nsec } = header.mtime;
  if (nsec !== 0 || sec < 0 || sec > octalMax(FIELD.mtime[1])) pax.push(["mtime", paxText(formatPaxTime(header.mtime))]);
  formatNumeric(block, FIELD.mtime, sec);
  // Sorted so the same tree always gives the same bytes (layer digests).
  for (const attr of [...header.xattrs.keys()].sort()) pax.push([XATTR_PREFIX + attr, header.xattrs.get(attr)!]);

  formatNumeric(block, FIELD.mode, header.mode & 0o7777);
  block[FIELD.typeflag[0]] = TYPEFLAGS[header.type].charCodeAt(0);
  formatNumeric(block, FIELD.devmajor, header.devmajor);
  formatNumeric(block, FIELD.devminor, header.devminor);
  writeUstarMagic(block);
  writeChecksum(block);
  if (pax.length === 0) return block;

  const data = formatPaxRecords(pax);
  const paxBlock = new Uint8Array(BLOCK);
  // GNU tar's convention: a name readers without PAX can extract harmlessly, next to the real one.
  formatAscii(paxBlock, FIELD.name, asciiFallback(`PaxHeaders.0/${basename(name)}`, 100));
  formatNumeric(paxBlock, FIELD.mode, 0o644);
  formatNumeric(paxBlock, FIELD.uid, 0);
  formatNumeric(paxBlock, FIELD.gid, 0);
  formatNumeric(paxBlock, FIELD.size, data.byteLength);
  formatNumeric(paxBlock, FIELD.mtime, Math.min(Math.max(sec, 0), octalMax(FIELD.mtime[1])));
  paxBlock[FIELD.typeflag[0]] = 0x78; // 'x'
  formatNumeric(paxBlock, FIELD.devmajor, 0);
  formatNumeric(paxBlock, FIELD.devminor, 0);
  writeUstarMagic(paxBlock);
  writeChecksum(paxBlock);

  const out = new Uint8Array(BLOCK + data.byteLength + padding(data.byteLength) + BLOCK);
  out.set(paxBlock, 0);
  out.set(data, BLOCK);
  out.set(block, out.byteLength - BLOCK);
  return out;
}

/** POSIX ustar: magic "ustar\0", version "00". */
function writeUstarMagic(block: Uint8Array): void {
  const m = FIELD.magic[0];
  block.set([0x75, 0x73, 0x74, 0x61, 0x72, 0, 0x30, 0x30], m);
}

/** Put an ASCII name longer than 100 bytes into prefix + "/" + name; false when no split fits. */
function splitName(block: Uint8Array, name: string): boolean {
  if (name.length > FIELD.prefix[1] + 1 + FIELD.name[1] || !isAscii(name)) return false;
  // The last slash that leaves a non-empty name part; a directory's trailing slash stays in the name.
  const slash = name.lastIndexOf("/", Math.min(FIELD.prefix[1], name.length - 2));
  if (slash <= 0 || name.length - slash - 1 > FIELD.name[1]) return false;
  formatAscii(block, FIELD.prefix, name.slice(0, slash));
  formatAscii(block, FIELD.name, name.slice(slash + 1));
  return true;
}

/** What goes in a ustar field when the real value is in PAX: its ASCII characters, cut to fit. */
function asciiFallback(s: string, max: number): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/[^\x01-\x7f]/g, "_").slice(0, max);
}

function basename(name: string): string {
  const trimmed = name.endsWith("/") ? name.slice(0, -1) : name;
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

function validate(h: TarHeader): void {
  const fail = (why: string) => new InvalidLayerError(`Cannot write tar entry ${JSON.stringify(h.name)}: ${why}`);
  if (!(h.type in TYPEFLAGS)) throw fail(`unknown type ${JSON.stringify(h.type)}`);
  if (h.name === "") throw fail("empty name");
  if (h.name.includes("\0")) throw fail("NUL in name");
  if (h.linkname.includes("\0")) throw fail("NUL in link target");
  if ((h.uname ?? "").includes("\0") || (h.gname ?? "").includes("\0")) throw fail("NUL in owner name");
  for (const key of ["mode", "uid", "gid", "size", "devmajor", "devminor"] as const) {
    if (!Number.isSafeInteger(h[key]) || h[key] < 0) throw fail(`invalid ${key} ${h[key]}`);
  }
  if (h.type !== "file" && h.size !== 0) throw fail(`a ${h.type} cannot have content`);
  const { sec, nsec } = h.mtime;
  if (!Number.isSafeInteger(sec) || !Number.isInteger(nsec) || nsec < 0 || nsec >= 1e9) {
    throw fail(`invalid mtime ${sec}.${nsec}`);
  }
  for (const [attr, value] of h.xattrs) {
    // PAX keys end at the first "=", and NUL ends a C string: such names cannot be written or set.
    if (attr === "" || attr.includes("=") || attr.includes("\0")) throw fail(`invalid xattr name ${JSON.stringify(attr)}`);
    if (!(value instanceof Uint8Array)) throw fail(`xattr ${JSON.stringify(attr)} is not bytes`);
  }
}
