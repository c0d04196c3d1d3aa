/**
 * Streaming tar reader: ustar, POSIX PAX and GNU archives from an untrusted stream, one entry at a
 * time, content passed through as views of the input chunks. Our own rather than tar-stream's
 * because PAX values must stay bytes (binary `SCHILY.xattr.*` values do not survive UTF-8).
 */
import { InvalidLayerError } from "../core/errors.ts";
import type { TarEntry, TarEntryType, TarHeader } from "./tar-types.ts";
import { BLOCK, decodeText, isZeroBlock, padding } from "./_tar-fields.ts";
import { parseHeader, type RawHeader, unsupportedType } from "./_tar-header.ts";
import { type PaxRecord, parsePaxInt, parsePaxRecords, parsePaxTime, XATTR_PREFIX } from "./_tar-pax.ts";
import { ByteSource } from "./_tar-source.ts";
import { EntryBody } from "./_tar-body.ts";

/** Bounds on what a hostile archive can make the reader hold in memory. */
export interface TarLimits {
  /** Largest PAX (`x`/`g`) or GNU long name/link (`L`/`K`) record, in bytes. Default 1 MiB. */
  maxRecordSize?: number;
  /** Longest entry name or link target, in UTF-8 bytes. Default 4096 (Linux PATH_MAX). */
  maxNameLength?: number;
}

/** The limits used when none are given. */
export const DEFAULT_TAR_LIMITS: Readonly<Required<TarLimits>> = { maxRecordSize: 1 << 20, maxNameLength: 4096 };

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file", // contiguous file: an ordinary file everywhere but a few 1980s systems
  "1": "link",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "directory",
  "6": "fifo",
};

/** `g` keys carried to later entries. */
const GLOBAL_KEYS = new Set(["uid", "gid", "uname", "gname", "mtime"]);
/** Globals are applied to every later entry, so their number bounds the work per entry. */
const MAX_GLOBAL_KEYS = 64;

const PAX_LOCAL = 0x78; // 'x'
const PAX_GLOBAL = 0x67; // 'g'
const GNU_LONGNAME = 0x4c; // 'L'
const GNU_LONGLINK = 0x4b; // 'K'

/** Records carried between headers: the pending `x`, `L`, `K` for the next entry. */
interface Pending {
  pax?: PaxRecord[];
  longName?: string;
  longLink?: string;
}

/**
 * The entries of a tar stream, in order. Each entry's body must be consumed or skipped before the
 * next is requested, or the reader skips it. The stream is cancelled when iteration ends.
 * Throws InvalidLayerError for anything malformed or unsupported.
 * @example
 * ```ts
 * for await (const { header, body } of readTar(request.body!)) {
 *   if (header.type !== "file") continue; // an unread body is skipped
 *   for await (const chunk of body) hash.update(chunk);
 * }
 * ```
 */
export async function* readTar(stream: ReadableStream<Uint8Array>, limits: TarLimits = {}): AsyncGenerator<TarEntry> {
  const maxRecord = limits.maxRecordSize ?? DEFAULT_TAR_LIMITS.maxRecordSize;
  const maxName = limits.maxNameLength ?? DEFAULT_TAR_LIMITS.maxNameLength;
  const src = new ByteSource(stream);
  // Global (`g`) records accumulate for the rest of the archive; their total is capped too.
  const globals = new Map<string, Uint8Array>();
  let globalSize = 0;
  let body: EntryBody | undefined;
  let failure: unknown;

  const readRecord = async (size: number, at: number, what: string): Promise<Uint8Array> => {
    if (size > maxRecord) {
      throw new InvalidLayerError(`Invalid tar header at offset ${at}: ${what} record of ${size} bytes exceeds the limit of ${maxRecord}`);
    }
    const data = await src.take(size);
    if (data.byteLength < size || (await src.skip(padding(size))) < padding(size)) {
      throw new InvalidLayerError(`Unexpected end of archive in the ${what} record at offset ${at}`);
    }
    return data;
  };
  const readBlock = (): Uint8Array | Promise<Uint8Array> => src.takeSync(BLOCK) ?? src.take(BLOCK);
  const truncatedHeader = (at: number) => new InvalidLayerError(`Unexpected end of archive at offset ${at}: truncated header`);

  try {
    for (;;) {
      const retiring = body?.retire();
      if (retiring) await retiring;
      body = undefined;
      const pending: Pending = {};
      let at: number;
      let raw: RawHeader;
      for (;;) {
        at = src.offset;
        let block = readBlock();
        if (block instanceof Promise) block = await block;
        if (block.byteLength === 0 && !hasPending(pending)) return;
        if (block.byteLength < BLOCK) throw truncatedHeader(at);
        if (isZeroBlock(block)) {
          if (hasPending(pending)) {
            throw new InvalidLayerError(`Invalid tar header at offset ${at}: end of archive after an extended header`);
          }
          // Go accepts end of stream right after the first zero block; a second block must be zero.
          const next = await readBlock();
          if (next.byteLength === 0) return;
          if (next.byteLength < BLOCK) throw truncatedHeader(at + BLOCK);
          if (!isZeroBlock(next)) throw new InvalidLayerError(`Invalid tar header at offset ${at + BLOCK}: data after a zero block`);
          return;
        }
        raw = parseHeader(block, at);
        if (raw.typeflag === PAX_LOCAL) {
          const records = parsePaxRecords(await readRecord(raw.size, at, "PAX"));
          if (typeof records === "string") throw new InvalidLayerError(`Invalid PAX header at offset ${at}: ${records}`);
          pending.pax = records;
        } else if (raw.typeflag === PAX_GLOBAL) {
          const records = parsePaxRecords(await readRecord(raw.size, at, "PAX"));
          if (typeof records === "string") throw new InvalidLayerError(`Invalid PAX header at offset ${at}: ${records}`);
          globalSize = mergeGlobals(globals, globalSize, records);
          if (globalSize > maxRecord || globals.size > MAX_GLOBAL_KEYS) {
            throw new InvalidLayerError(`Invalid PAX header at offset ${at}: global records exceed the limit of ${MAX_GLOBAL_KEYS} keys or ${maxRecord} bytes`);
          }
        } else if (raw.typeflag === GNU_LONGNAME || raw.typeflag === GNU_LONGLINK) {
          const data = await readRecord(raw.size, at, "GNU long name");
          // The record is NUL-terminated (and may be padded with more NULs).
          const nul = data.indexOf(0);
          const text = decodeText(nul < 0 ? data : data.subarray(0, nul));
          if (raw.typeflag === GNU_LONGNAME) pending.longName = text;
          else pending.longLink = text;
        } else break;
      }
      const header = buildHeader(raw, pending, globals, at);
      const nameError = checkName(header.name, maxName) ?? checkName(header.linkname, maxName, true);
      if (nameError) throw new InvalidLayerError(`Invalid tar entry "${printable(header.name)}" at offset ${at}: ${nameError}`);
      body = new EntryBody(src, printable(header.name), header.size);
      const entryBody = body;
      yield { header, body: entryBody, skip: () => entryBody.skip() };
    }
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    src.close(failure);
  }
}

function hasPending(p: Pending): boolean {
  return p.pax !== undefined || p.longName !== undefined || p.longLink !== undefined;
}

/**
 * Apply a `g` record to the global set; returns the set's new size in bytes, for the limit. The
 * size is kept as a running total: recounting the whole set per record would let many small `g`
 * records cost quadratic time. Only keys that apply to later entries are kept, and per-file ones
 * (a global `path` or `size` would give every entry the same one) are not.
 */
function mergeGlobals(globals: Map<string, Uint8Array>, size: number, records: PaxRecord[]): number {
  for (const [key, value] of records) {
    if (!GLOBAL_KEYS.has(key) && !key.startsWith(XATTR_PREFIX)) continue;
    const old = globals.get(key);
    if (old) size -= key.length + old.byteLength;
    // POSIX: an empty value in a global record removes the keyword.
    if (value.byteLength === 0) globals.delete(key);
    else {
      globals.set(key, value);
      size += key.length + value.byteLength;
    }
  }
  return size;
}

/** Fold the GNU and PAX records into the block's fields and map the typeflag. */
function buildHeader(raw: RawHeader, pending: Pending, globals: Map<string, Uint8Array>, at: number): TarHeader {
  const header: TarHeader = {
    name: pending.longName ?? raw.name,
    type: "file",
    mode: raw.mode,
    uid: raw.uid,
    gid: raw.gid,
    size: raw.size,
    mtime: { sec: raw.mtime, nsec: 0 },
    linkname: pending.longLink ?? raw.linkname,
    devmajor: raw.devmajor,
    devminor: raw.devminor,
    xattrs: new Map(),
    uname: raw.uname,
    gname: raw.gname,
  };
  // Globals first so the entry's own `x` records win.
  for (const [key, value] of globals) applyPax(header, key, value, at);
  if (pending.pax) for (const [key, value] of pending.pax) applyPax(header, key, value, at);

  const type = TYPES[String.fromCharCode(raw.typeflag)];
  if (type === undefined) throw unsupportedType(raw.typeflag, printable(header.name), at);
  // Pre-POSIX archives mark directories only with a trailing slash on a '\0' entry.
  header.type = type === "file" && raw.typeflag === 0 && header.name.endsWith("/") ? "directory" : type;
  // Only files have content; other types' size field is ignored (as Go does), whatever it says.
  if (header.type !== "file") header.size = 0;
  return header;
}

function applyPax(header: TarHeader, key: string, value: Uint8Array, at: number): void {
  const bad = () => new InvalidLayerError(`Invalid PAX header at offset ${at}: bad ${JSON.stringify(key)} value`);
  // An empty value means "use the header block's field" (POSIX), except for xattrs where empty is a value.
  if (value.byteLength === 0 && !key.startsWith(XATTR_PREFIX)) return;
  switch (key) {
    case "path":
      header.name = decodeText(value);
      return;
    case "linkpath":
      header.linkname = decodeText(value);
      return;
    case "uname":
      header.uname = decodeText(value);
      return;
    case "gname":
      header.gname = decodeText(value);
      return;
    case "size":
    case "uid":
    case "gid": {
      const n = parsePaxInt(value);
      if (Number.isNaN(n)) throw bad();
      header[key] = n;
      return;
    }
    case "mtime": {
      const t = parsePaxTime(value);
      if (!t) throw bad();
      header.mtime = t;
      return;
    }
  }
  if (key.startsWith(XATTR_PREFIX) && key.length > XATTR_PREFIX.length) {
    header.xattrs.set(key.slice(XATTR_PREFIX.length), value);
  }
  // Anything else (atime, ctime, comment, charset, vendor keys) does not concern a layer.
}

function checkName(name: string, max: number, link = false): string | undefined {
  if (name === "" && !link) return "empty name";
  if (name.includes("\0")) return `NUL in ${link ? "link target" : "name"}`;
  // UTF-8 length is at most 3 bytes per UTF-16 unit; count exactly only when that could matter.
  if (name.length * 3 > max && new TextEncoder().encode(name).byteLength > max) {
    return `${link ? "link target" : "name"} longer than ${max} bytes`;
  }
  return undefined;
}

/** A name safe to put in an error message (NULs and other controls escaped, length capped). */
function printable(name: string): string {
  const short = name.length > 200 ? `${name.slice(0, 200)}…` : name;
  return JSON.stringify(short).slice(1, -1);
}
