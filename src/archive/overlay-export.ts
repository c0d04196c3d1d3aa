/**
 * A layer Diff straight from an overlay upper dir, converted to AUFS form on the way out (what
 * moby's overlayWhiteoutConverter.ConvertWrite does): a whiteout (character device 0/0) becomes an
 * empty `.wh.NAME` file, an opaque directory (`trusted.overlay.opaque=y`) gains a `.wh..wh..opq`
 * entry, and overlay's own attributes (`trusted.overlay.*`) stay behind.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { Stat, Sys } from "../sys/types.ts";
import type { TarEntryType, TarHeader } from "./tar-types.ts";
import { TarWriter } from "./tar-writer.ts";

/** The AUFS whiteout prefix. */
export const WHITEOUT_PREFIX = ".wh.";
/** The AUFS opaque-directory marker, inside the directory. */
export const WHITEOUT_OPAQUE = ".wh..wh..opq";

const S_IFMT = 0o170000;
const TYPES: Record<number, TarEntryType> = {
  0o100000: "file",
  0o040000: "directory",
  0o120000: "symlink",
  0o020000: "char",
  0o060000: "block",
  0o010000: "fifo",
};
const READ_CHUNK = 256 * 1024;

/** Options of `exportUpper`. */
export interface ExportUpperOptions {
  sys: Sys;
  /** The xattr marking opaque directories. Default `trusted.overlay.opaque`. */
  opaqueXattr?: string;
}

/** One path of the upper dir, relative ("a/b"), with what lstat said. */
interface Found {
  rel: string;
  st: Stat;
}

function _collect(sys: Sys, upper: string): Found[] {
  const out: Found[] = [];
  const walk = (rel: string) => {
    for (const e of sys.readdirTypes(path.join(upper, rel))) {
      const child = rel === "" ? e.name : `${rel}/${e.name}`;
      const st = sys.lstat(path.join(upper, child));
      out.push({ rel: child, st });
      if ((st.mode & S_IFMT) === 0o040000) walk(child);
    }
  };
  walk("");
  // Sorted by whole path, like a sorted change list: a directory still comes before what it holds.
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/** Whether an xattr belongs to overlay itself rather than to the file. */
function _isOverlayXattr(name: string): boolean {
  return name.startsWith("trusted.overlay.") || name.startsWith("user.overlay.");
}

async function* _body(abs: string, size: number): AsyncIterable<Uint8Array> {
  const handle = await fs.open(abs, "r");
  try {
    let left = size;
    while (left > 0) {
      // A fresh buffer each time: the tar writer hands large chunks on without copying them.
      const buf = new Uint8Array(Math.min(READ_CHUNK, left));
      const { bytesRead } = await handle.read(buf, 0, buf.byteLength, null);
      if (bytesRead === 0) break;
      left -= bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

/**
 * The header of a path on disk, or null for what tar cannot carry (sockets).
 * @example
 * headerOf(sys, "/h/abc/diff/etc/hosts", "etc/hosts", sys.lstat("/h/abc/diff/etc/hosts"));
 */
export async function headerOf(sys: Sys, abs: string, rel: string, st: Stat): Promise<TarHeader | null> {
  const type = TYPES[st.mode & S_IFMT];
  if (type === undefined) return null;
  const xattrs = new Map<string, Uint8Array>();
  for (const name of sys.llistxattr(abs)) {
    if (_isOverlayXattr(name)) continue;
    const value = sys.lgetxattr(abs, name);
    if (value !== null) xattrs.set(name, value);
  }
  return {
    name: rel,
    type,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    size: type === "file" ? st.size : 0,
    mtime: st.mtime,
    linkname: type === "symlink" ? await fs.readlink(abs) : "",
    devmajor: type === "char" || type === "block" ? st.rdevMajor : 0,
    devminor: type === "char" || type === "block" ? st.rdevMinor : 0,
    xattrs,
  };
}

async function _write(writer: TarWriter, sys: Sys, upper: string, opaqueXattr: string): Promise<void> {
  const firstLink = new Map<bigint, string>();
  for (const { rel, st } of _collect(sys, upper)) {
    const abs = path.join(upper, rel);
    const header = await headerOf(sys, abs, rel, st);
    if (header === null) continue;
    if (header.type === "char" && header.devmajor === 0 && header.devminor === 0) {
      const dir = path.posix.dirname(rel);
      const name = path.posix.join(dir === "." ? "" : dir, WHITEOUT_PREFIX + path.posix.basename(rel));
      await writer.add({ ...header, name, type: "file", mode: 0o600, size: 0, xattrs: new Map() });
      continue;
    }
    if (header.type === "file" && st.nlink > 1) {
      const first = firstLink.get(st.ino);
      if (first !== undefined) {
        await writer.add({ ...header, type: "link", size: 0, linkname: first });
        continue;
      }
      firstLink.set(st.ino, rel);
    }
    await writer.add(header, header.type === "file" && header.size > 0 ? _body(abs, header.size) : undefined);
    if (header.type === "directory") {
      const opaque = sys.lgetxattr(abs, opaqueXattr);
      if (opaque !== null && opaque.length === 1 && opaque[0] === 0x79) {
        await writer.add({
          ...header,
          name: `${rel}/${WHITEOUT_OPAQUE}`,
          type: "file",
          mode: header.mode & 0o777,
          xattrs: new Map(),
        });
      }
    }
  }
  await writer.finish();
}

/**
 * Stream the upper dir `upper` as a layer tar with AUFS whiteouts. The walk starts at once; the
 * stream errors if it fails.
 * @example
 * const tar = exportUpper("/var/lib/docker/strata/abc/diff", { sys });
 * await new Response(tar).arrayBuffer();
 */
export function exportUpper(upper: string, opts: ExportUpperOptions): ReadableStream<Uint8Array> {
  const writer = new TarWriter();
  _write(writer, opts.sys, upper, opts.opaqueXattr ?? "trusted.overlay.opaque").catch((err) => writer.abort(err));
  return writer.stream;
}
