/**
 * Archiving one path of a layer directory into a TarWriter with all its metadata: the part
 * `exportChanges` (naive Diff) and `exportUpper` (overlay's native Diff) share, so that both write
 * the same bytes for the same changes.
 */
import { readlinkSync } from "node:fs";
import type { IdMap } from "../core/driver.ts";
import { hasCode } from "../core/errors.ts";
import { O, type Stat, type Sys } from "../sys/types.ts";
import { tarTypeOf } from "./_file-type.ts";
import { toContainer } from "./_id-map.ts";
import { readXattrs, readXattrsFd } from "./_metadata.ts";
import { isGone, type Tree } from "./tree.ts";
import { WHITEOUT_PREFIX } from "./whiteouts.ts";
import type { TarHeader } from "./tar-types.ts";
import type { TarWriter } from "./tar-writer.ts";

const READ_CHUNK = 256 * 1024;
/** Files up to this size are read in one call. */
const SMALL_FILE = 128 * 1024;
/** Markers (whiteouts, opaque) carry no time of their own; a fixed one keeps the same changes the same bytes. */
const MARKER_MTIME = { sec: 0, nsec: 0 };
const CAPABILITY_XATTR = "security.capability";

/** How entries are written. */
export interface EntryWriterOptions {
  sys: Sys;
  /** Host → container UID map: owners are written as the container sees them. */
  uidMaps?: IdMap[];
  /** Host → container GID map. */
  gidMaps?: IdMap[];
  /** Attributes that are the storage's bookkeeping, not the file's own (overlay's). */
  dropXattr?: (name: string) => boolean;
}

/** `.wh.NAME` for the archive path `rel`. */
export function whiteoutName(rel: string): string {
  const slash = rel.lastIndexOf("/");
  return `${rel.slice(0, slash + 1)}${WHITEOUT_PREFIX}${rel.slice(slash + 1)}`;
}

/** True for an overlay whiteout: a character device 0/0. */
export function isOverlayWhiteout(st: Stat): boolean {
  return tarTypeOf(st.mode) === "char" && st.rdevMajor === 0 && st.rdevMinor === 0;
}

/** moby converts VFS_CAP_REVISION_3 to 2: the namespace root id in v3 means nothing in another namespace. */
function _portableCapability(value: Uint8Array): Uint8Array {
  if (value.byteLength < 24 || value[3] !== 3) return value;
  const v2 = value.slice(0, 20);
  v2[3] = 2;
  return v2;
}

/** Read into `buf` until it is full or the file ends; the bytes read. */
function _readFull(sys: Sys, fd: number, buf: Uint8Array): number {
  let at = 0;
  while (at < buf.byteLength) {
    const n = sys.readInto(fd, at === 0 ? buf : buf.subarray(at));
    if (n === 0) break;
    at += n;
  }
  return at;
}

function* _read(sys: Sys, fd: number, size: number): Iterable<Uint8Array> {
  for (let left = size; left > 0; ) {
    // A fresh buffer each time: the tar writer hands large chunks on without copying them.
    const buf = new Uint8Array(Math.min(READ_CHUNK, left));
    const n = _readFull(sys, fd, buf);
    // A short file makes the writer fail the stream: the header already promised `size` bytes.
    if (n === 0) return;
    left -= n;
    yield buf.subarray(0, n);
  }
}

/**
 * Writes paths of one directory tree as tar entries; hardlinks within one export become link
 * entries. Every entry is reached through the tree's directory descriptors, so a running container
 * that swaps a directory for a symlink after the walk gets nothing read through the link.
 */
export class EntryWriter {
  #writer: TarWriter;
  #tree: Tree;
  #opts: EntryWriterOptions;
  /** Hardlinked inodes already archived → their archive name. */
  #links = new Map<bigint, string>();

  constructor(writer: TarWriter, tree: Tree, opts: EntryWriterOptions) {
    this.#writer = writer;
    this.#tree = tree;
    this.#opts = opts;
  }

  /** The stat of `rel`, or null when it is gone or is reached through something that is no longer a directory. */
  stat(rel: string): Stat | null {
    return this.#tree.stat(rel);
  }

  /**
   * Archive `rel` (stat `st`) with its content; returns the header written, or null when the path
   * vanished meanwhile or is a socket (tar has no such type; moby skips them too).
   * `ownersAsIs` keeps host ids (an overlay whiteout the kernel made: moby leaves its owner alone).
   */
  async write(rel: string, st: Stat, ownersAsIs = false): Promise<TarHeader | null> {
    const sys = this.#opts.sys;
    // A regular file with content is opened first (in its directory's descriptor, O_NOFOLLOW: one
    // swapped for a symlink after the listing is not read through the link), and its attributes
    // are read from that descriptor: no path is resolved for it.
    let fd = -1;
    if (tarTypeOf(st.mode) === "file" && st.size > 0 && !(st.nlink > 1 && this.#links.has(st.ino))) {
      try {
        fd = this.#tree.open(rel, O.RDONLY);
      } catch (err) {
        if (isGone(err)) return null;
        throw err;
      }
    }
    try {
      return await this.#write(rel, st, ownersAsIs, fd);
    } finally {
      if (fd !== -1) sys.close(fd);
    }
  }

  async #write(rel: string, st: Stat, ownersAsIs: boolean, fd: number): Promise<TarHeader | null> {
    let header: TarHeader | null;
    try {
      header = await this.#header(rel, st, ownersAsIs, fd);
    } catch (err) {
      if (isGone(err)) return null; // removed while its attributes were read
      throw err;
    }
    if (header === null) return null;
    if (header.type !== "file" || header.size === 0 || fd === -1) {
      await this.#writer.add(header);
      return header;
    }
    const sys = this.#opts.sys;
    if (header.size <= SMALL_FILE) {
      // One read; the header takes the size actually read, so a small file a running container
      // is writing to cannot break the archive.
      const bytes = new Uint8Array(header.size);
      const n = _readFull(sys, fd, bytes);
      header = { ...header, size: n };
      await this.#writer.add(header, n === bytes.byteLength ? bytes : bytes.subarray(0, n));
      return header;
    }
    await this.#writer.add(header, _read(sys, fd, header.size));
    return header;
  }

  /** An empty marker entry (a whiteout or an opaque marker) with a fixed time. */
  async marker(name: string, mode = 0, uid = 0, gid = 0): Promise<void> {
    await this.#writer.add({ name, type: "file", mode, uid, gid, size: 0, mtime: MARKER_MTIME, linkname: "", devmajor: 0, devminor: 0, xattrs: new Map() });
  }

  async #header(rel: string, st: Stat, ownersAsIs: boolean, fd: number): Promise<TarHeader | null> {
    const type = tarTypeOf(st.mode);
    if (type === null) return null;
    const device = type === "char" || type === "block";
    const xattrs = fd === -1 ? readXattrs(this.#opts.sys, this.#tree.at(rel)) : readXattrsFd(this.#opts.sys, fd);
    const drop = this.#opts.dropXattr;
    if (drop) for (const name of [...xattrs.keys()]) if (drop(name)) xattrs.delete(name);
    const cap = xattrs.get(CAPABILITY_XATTR);
    if (cap) xattrs.set(CAPABILITY_XATTR, _portableCapability(cap));
    const header: TarHeader = {
      name: rel,
      type,
      mode: st.mode & 0o7777,
      uid: ownersAsIs ? st.uid : toContainer(this.#opts.uidMaps, st.uid, "UID"),
      gid: ownersAsIs ? st.gid : toContainer(this.#opts.gidMaps, st.gid, "GID"),
      size: type === "file" ? st.size : 0,
      // Whole seconds, as moby's FileInfoHeader writes them: no PAX record per entry for the
      // fraction, and the same bytes overlay2 would give for the same tree.
      mtime: { sec: st.mtime.sec, nsec: 0 },
      linkname: type === "symlink" ? await this.#readlink(rel) : "",
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

  async #readlink(rel: string): Promise<string> {
    try {
      return readlinkSync(this.#tree.at(rel));
    } catch (err) {
      // EINVAL: no longer a symlink (a running container replaced it): as good as gone.
      if (hasCode(err, "EINVAL")) throw Object.assign(new Error(`"${rel}" changed while it was read`), { code: "ENOENT" });
      throw err;
    }
  }
}
