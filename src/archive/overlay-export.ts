/**
 * A layer Diff straight from an overlay upper dir, converted to AUFS form on the way out (what
 * moby's overlayWhiteoutConverter.ConvertWrite does): a whiteout (character device 0/0) becomes a
 * `.wh.NAME` entry, an opaque directory (`trusted.overlay.opaque=y`) gains a `.wh..wh..opq` entry,
 * and overlay's own attributes (`trusted.overlay.*`) stay behind. Entries are written as
 * `exportChanges` writes them (same order, headers, whiteouts), so a native Diff and a naive one
 * of the same changes are the same bytes.
 */
import * as fs from "node:fs/promises";
import { constants } from "node:fs";
import type { IdMap } from "../driver.ts";
import { hasCode } from "../errors.ts";
import { DT, type Stat, type Sys } from "../sys/types.ts";
import { isDirMode, tarTypeOf } from "./_file-type.ts";
import { toContainer } from "./_id-map.ts";
import { readXattrs, yieldToLoop } from "./_metadata.ts";
import { OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX } from "./apply.ts";
import { comparePaths } from "./changes.ts";
import type { TarHeader } from "./tar-types.ts";
import { TarWriter } from "./tar-writer.ts";

const READ_CHUNK = 256 * 1024;
/** Files up to this size are read in one call. */
const SMALL_FILE = 128 * 1024;
/** exportChanges's whiteout time: fixed, so the same changes are the same bytes. */
const FIXED_MTIME = { sec: 0, nsec: 0 };
const CAPABILITY_XATTR = "security.capability";
/** O_NOFOLLOW: a file swapped for a symlink after the walk is not read through the link. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;
/** Paths looked at between two yields to the event loop. */
const YIELD_EVERY = 1024;

/** Options of `exportUpper`. */
export interface ExportUpperOptions {
  sys: Sys;
  /** Host → container UID map: owners are written as the container sees them. */
  uidMaps?: IdMap[];
  /** Host → container GID map. */
  gidMaps?: IdMap[];
}

/** Whether an xattr is overlay's bookkeeping rather than the file's own. */
function _isOverlayXattr(name: string): boolean {
  return name.startsWith("trusted.overlay.") || name.startsWith("user.overlay.");
}

/** As exportChanges does (after moby): a v3 file capability loses its namespace root id. */
function _portableCapability(value: Uint8Array): Uint8Array {
  if (value.byteLength < 24 || value[3] !== 3) return value;
  const v2 = value.slice(0, 20);
  v2[3] = 2;
  return v2;
}

/** Every path under `upper` ("a/b"), sorted as moby sorts change paths. */
async function _paths(sys: Sys, upper: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const e of sys.readdirTypes(rel === "" ? upper : `${upper}/${rel}`)) {
      const child = rel === "" ? e.name : `${rel}/${e.name}`;
      out.push(child);
      if (out.length % YIELD_EVERY === 0) await yieldToLoop();
      const isDir = e.type === DT.UNKNOWN ? isDirMode(sys.lstat(`${upper}/${child}`).mode) : e.type === DT.DIR;
      if (isDir) await walk(child);
    }
  };
  await walk("");
  return out.sort((a, b) => comparePaths(`/${a}`, `/${b}`));
}

async function* _read(handle: fs.FileHandle, size: number): AsyncIterable<Uint8Array> {
  for (let left = size; left > 0; ) {
    // A fresh buffer each time: the tar writer hands large chunks on without copying them.
    const buf = new Uint8Array(Math.min(READ_CHUNK, left));
    const { bytesRead } = await handle.read(buf, 0, buf.byteLength, null);
    if (bytesRead === 0) return;
    left -= bytesRead;
    yield buf.subarray(0, bytesRead);
  }
}

class _UpperExporter {
  #writer: TarWriter;
  #upper: string;
  #opts: ExportUpperOptions;
  #links = new Map<bigint, string>();
  /** Directories checked to be real (not symlinks) on the way to an entry. */
  #realDirs = new Set<string>();

  constructor(writer: TarWriter, upper: string, opts: ExportUpperOptions) {
    this.#writer = writer;
    this.#upper = upper.replace(/\/+$/, "");
    this.#opts = opts;
  }

  async run(): Promise<void> {
    for (const rel of await _paths(this.#opts.sys, this.#upper)) await this.#entry(rel);
    await this.#writer.finish();
  }

  async #entry(rel: string): Promise<void> {
    const abs = `${this.#upper}/${rel}`;
    // A running container may have swapped a directory for a symlink since the walk: never read through it.
    if (!this.#ancestorsReal(rel)) return;
    const st = this.#lstat(abs);
    if (st === null) return;
    const type = tarTypeOf(st.mode);
    if (type === null) return;
    if (type === "char" && st.rdevMajor === 0 && st.rdevMinor === 0) {
      const slash = rel.lastIndexOf("/");
      return await this.#writer.add(this.#marker(`${rel.slice(0, slash + 1)}${WHITEOUT_PREFIX}${rel.slice(slash + 1)}`, 0, 0, 0));
    }
    let header: TarHeader;
    try {
      header = await this.#header(abs, rel, st);
    } catch (err) {
      if (hasCode(err, "ENOENT", "ENOTDIR")) return; // removed while its attributes were read
      throw err;
    }
    if (header.type === "file" && header.size > 0) {
      let handle: fs.FileHandle;
      try {
        if (header.size <= SMALL_FILE) {
          // One call instead of open/read/close; the header takes the size actually read, so a
          // small file a running container is writing to cannot break the archive.
          const bytes = await fs.readFile(abs, { flag: OPEN_FLAGS });
          return await this.#writer.add({ ...header, size: bytes.byteLength }, bytes);
        }
        handle = await fs.open(abs, OPEN_FLAGS);
      } catch (err) {
        if (hasCode(err, "ENOENT", "ENOTDIR", "ELOOP")) return;
        throw err;
      }
      try {
        await this.#writer.add(header, _read(handle, header.size));
      } finally {
        await handle.close();
      }
      return;
    }
    await this.#writer.add(header);
    const opaque = type === "directory" ? this.#opts.sys.lgetxattr(abs, OVERLAY_OPAQUE_XATTR) : null;
    if (opaque !== null && opaque.length === 1 && opaque[0] === 0x79) {
      // As moby writes it: the directory's permissions and owner, no time.
      await this.#writer.add(this.#marker(`${rel}/${WHITEOUT_OPAQUE}`, header.mode & 0o777, header.uid, header.gid));
    }
  }

  #marker(name: string, mode: number, uid: number, gid: number): TarHeader {
    return { name, type: "file", mode, uid, gid, size: 0, mtime: FIXED_MTIME, linkname: "", devmajor: 0, devminor: 0, xattrs: new Map() };
  }

  async #header(abs: string, rel: string, st: Stat): Promise<TarHeader> {
    const type = tarTypeOf(st.mode)!;
    const device = type === "char" || type === "block";
    const xattrs = readXattrs(this.#opts.sys, abs);
    for (const name of [...xattrs.keys()]) if (_isOverlayXattr(name)) xattrs.delete(name);
    const cap = xattrs.get(CAPABILITY_XATTR);
    if (cap) xattrs.set(CAPABILITY_XATTR, _portableCapability(cap));
    const header: TarHeader = {
      name: rel,
      type,
      mode: st.mode & 0o7777,
      uid: toContainer(this.#opts.uidMaps, st.uid, "UID"),
      gid: toContainer(this.#opts.gidMaps, st.gid, "GID"),
      size: type === "file" ? st.size : 0,
      mtime: st.mtime,
      linkname: type === "symlink" ? await fs.readlink(abs) : "",
      devmajor: device ? st.rdevMajor : 0,
      devminor: device ? st.rdevMinor : 0,
      xattrs,
    };
    if (type !== "directory" && st.nlink > 1) {
      const first = this.#links.get(st.ino);
      if (first === undefined) this.#links.set(st.ino, rel);
      else return { ...header, type: "link", linkname: first, size: 0 };
    }
    return header;
  }

  #ancestorsReal(rel: string): boolean {
    for (let slash = rel.indexOf("/"); slash >= 0; slash = rel.indexOf("/", slash + 1)) {
      const dirRel = rel.slice(0, slash);
      if (this.#realDirs.has(dirRel)) continue;
      const st = this.#lstat(`${this.#upper}/${dirRel}`);
      if (st === null || !isDirMode(st.mode)) return false;
      this.#realDirs.add(dirRel);
    }
    return true;
  }

  #lstat(abs: string): Stat | null {
    try {
      return this.#opts.sys.lstat(abs);
    } catch (err) {
      if (hasCode(err, "ENOENT", "ENOTDIR")) return null;
      throw err;
    }
  }
}

/**
 * Stream the upper dir `upper` as a layer tar with AUFS whiteouts, produced as it is read.
 * @example
 * const tar = exportUpper("/var/lib/docker/strata/abc/diff", { sys });
 * await new Response(tar).arrayBuffer();
 */
export function exportUpper(upper: string, opts: ExportUpperOptions): ReadableStream<Uint8Array> {
  const writer = new TarWriter();
  new _UpperExporter(writer, upper, opts).run().catch((err) => writer.abort(err));
  return writer.stream;
}
