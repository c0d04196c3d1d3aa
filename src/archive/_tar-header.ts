/**
 * Decoding one 512-byte header block (V7, ustar, GNU or star) into its raw fields, before any PAX
 * or GNU long-name record is folded in. Validation follows Go's archive/tar, which is what dockerd
 * itself accepts.
 */
import { InvalidLayerError } from "../core/errors.ts";
import { checksums, FIELD, type FieldName, parseNumeric, parseString } from "./_tar-fields.ts";

/** A header block's fields as stored. `typeflag` is the raw byte. */
export interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: number;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}

/** Header formats, told apart by the magic field; they differ in whether `prefix` holds a path. */
const Format = { V7: 0, Ustar: 1, Gnu: 2, Star: 3 } as const;
type Format = (typeof Format)[keyof typeof Format];

function formatOf(block: Uint8Array): Format {
  const m = FIELD.magic[0];
  // "ustar\0" then version "00" (POSIX), or "ustar " then " \0" (GNU).
  if (block[m] !== 0x75 || block[m + 1] !== 0x73 || block[m + 2] !== 0x74 || block[m + 3] !== 0x61 || block[m + 4] !== 0x72) {
    return Format.V7;
  }
  if (block[m + 5] === 0x20 && block[m + 6] === 0x20 && block[m + 7] === 0) return Format.Gnu;
  if (block[m + 5] !== 0) return Format.V7;
  // star keeps atime/ctime at the end of the prefix field and marks the block with "tar\0".
  if (block[508] === 0x74 && block[509] === 0x61 && block[510] === 0x72 && block[511] === 0) return Format.Star;
  return Format.Ustar;
}

/** Decode and validate a header block read at archive offset `at`. */
export function parseHeader(block: Uint8Array, at: number): RawHeader {
  const fail = (why: string) => new InvalidLayerError(`Invalid tar header at offset ${at}: ${why}`);
  const stored = parseNumeric(block, FIELD.chksum);
  const [unsigned, signed] = checksums(block);
  // Some historic writers summed signed chars; Go accepts either, and so do we.
  if (Number.isNaN(stored) || (stored !== unsigned && stored !== signed)) throw fail("checksum mismatch");

  const num = (field: FieldName, min = 0): number => {
    const v = parseNumeric(block, FIELD[field]);
    if (Number.isNaN(v)) throw fail(`invalid ${field} field`);
    if (v < min) throw fail(`negative ${field} field`);
    return v;
  };
  const format = formatOf(block);
  let name = parseString(block, FIELD.name);
  if (format === Format.Ustar || format === Format.Star) {
    const [off, len] = FIELD.prefix;
    const prefix = parseString(block, format === Format.Star ? [off, 131] : [off, len]);
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  const hasOwner = format !== Format.V7;
  return {
    name,
    mode: num("mode") % 0o10000,
    uid: num("uid"),
    gid: num("gid"),
    size: num("size"),
    mtime: num("mtime", -Number.MAX_SAFE_INTEGER),
    typeflag: block[FIELD.typeflag[0]]!,
    linkname: parseString(block, FIELD.linkname),
    uname: hasOwner ? parseString(block, FIELD.uname) : "",
    gname: hasOwner ? parseString(block, FIELD.gname) : "",
    devmajor: hasOwner ? num("devmajor") : 0,
    devminor: hasOwner ? num("devminor") : 0,
  };
}

/** Human names of typeflags strata refuses, for the error message. */
const UNSUPPORTED: Record<string, string> = {
  S: "GNU sparse file",
  V: "GNU volume header",
  M: "GNU multi-volume continuation",
  D: "GNU dump directory",
  N: "GNU old long name",
  A: "Solaris ACL",
  E: "Solaris extended attributes",
  X: "old Solaris extended header",
};

/** The error for an entry type strata cannot represent. */
export function unsupportedType(typeflag: number, name: string, at: number): InvalidLayerError {
  const c = String.fromCharCode(typeflag);
  const what = UNSUPPORTED[c] ?? "unknown type";
  return new InvalidLayerError(`Unsupported tar entry type ${JSON.stringify(c)} (${what}) for "${name}" at offset ${at}`);
}
