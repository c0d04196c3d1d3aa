/**
 * moby's `ExportChanges`: a layer tar of a change list. Added and modified paths are archived
 * from the layer directory with all their metadata; deleted ones become AUFS `.wh.NAME` entries.
 * The tar is produced as its reader pulls it, so a multi-gigabyte commit never sits in memory.
 */
import * as fs from "node:fs/promises";
import { constants } from "node:fs";
import type { Change, IdMap } from "../driver.ts";
import { ChangeKind } from "../driver.ts";
import { hasCode } from "../errors.ts";
import type { Stat, Sys } from "../sys/types.ts";
import { isDirMode, tarTypeOf } from "./_file-type.ts";
import { toContainer } from "./_id-map.ts";
import { readXattrs } from "./_metadata.ts";
import { WHITEOUT_PREFIX } from "./apply.ts";
import { comparePaths } from "./changes.ts";
import type { TarHeader } from "./tar-types.ts";
import { TarWriter } from "./tar-writer.ts";

/** Options of `exportChanges`. */
export interface ExportOptions {
  /** Host → container UID map: owners are written as the container sees them. */
  uidMaps?: IdMap[];
  /** Host → container GID map. */
  gidMaps?: IdMap[];
}

const READ_CHUNK = 256 * 1024;
/** Files up to this size are read in one call. */
const SMALL_FILE = 128 * 1024;
/** Whiteouts carry no time of their own; a fixed one keeps the same changes the same bytes. */
const WHITEOUT_MTIME = { sec: 0, nsec: 0 };
const CAPABILITY_XATTR = "security.capability";
/** O_NOFOLLOW: a file swapped for a symlink after it was listed is not read through the link. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;

/**
 * The tar of `changes` (paths relative to `dir`, starting with "/"), in path order.
 * A path that vanished since the change list was made is left out, as moby does for a running
 * container; any other failure errors the stream.
 * @example
 * const changes = await changesDirs(layerDir, parentDir, sys);
 * return new Response(exportChanges(layerDir, changes, sys));
 */
export function exportChanges(dir: string, changes: Change[], sys: Sys, opts: ExportOptions = {}): ReadableStream<Uint8Array> {
  const writer = new TarWriter();
  const sorted = [...changes].sort((a, b) => comparePaths(a.Path, b.Path));
  new _Exporter(writer, dir.replace(/\/+$/, ""), sys, opts).run(sorted).catch((err) => writer.abort(err));
  return writer.stream;
}

/** moby converts VFS_CAP_REVISION_3 to 2: the namespace root id in v3 means nothing in another namespace. */
function _portableCapability(value: Uint8Array): Uint8Array {
  if (value.byteLength < 24 || value[3] !== 3) return value;
  const v2 = value.slice(0, 20);
  v2[3] = 2;
  return v2;
}

async function* _read(handle: fs.FileHandle, size: number): AsyncIterable<Uint8Array> {
  for (let left = size; left > 0; ) {
    // A fresh buffer each time: the tar writer hands large chunks on without copying them.
    const buf = new Uint8Array(Math.min(READ_CHUNK, left));
    const { bytesRead } = await handle.read(buf, 0, buf.byteLength, null);
    // A short file makes the writer fail the stream: the header already promised `size` bytes.
    if (bytesRead === 0) return;
    left -= bytesRead;
    yield buf.subarray(0, bytesRead);
  }
}

class _Exporter {
  #writer: TarWriter;
  #dir: string;
  #sys: Sys;
  #opts: ExportOptions;
  /** Hardlinked inodes already archived → their archive name. */
  #links = new Map<bigint, string>();
  /** Directories checked to be real (not symlinks) on the way to an entry. */
  #realDirs = new Set<string>();

  constructor(writer: TarWriter, dir: string, sys: Sys, opts: ExportOptions) {
    this.#writer = writer;
    this.#dir = dir;
    this.#sys = sys;
    this.#opts = opts;
  }

  async run(changes: Change[]): Promise<void> {
    for (const change of changes) {
      const rel = change.Path.replace(/^\/+/, "");
      if (rel === "") continue;
      if (change.Kind === ChangeKind.Delete) await this.#whiteout(rel);
      else await this.#entry(rel);
    }
    await this.#writer.finish();
  }

  async #whiteout(rel: string): Promise<void> {
    const slash = rel.lastIndexOf("/");
    const name = `${rel.slice(0, slash + 1)}${WHITEOUT_PREFIX}${rel.slice(slash + 1)}`;
    await this.#writer.add({
      name, type: "file", mode: 0, uid: 0, gid: 0, size: 0, mtime: WHITEOUT_MTIME,
      linkname: "", devmajor: 0, devminor: 0, xattrs: new Map(),
    });
  }

  async #entry(rel: string): Promise<void> {
    const abs = `${this.#dir}/${rel}`;
    // A running container may have swapped a directory for a symlink since the walk: never read through it.
    if (!this.#ancestorsReal(rel)) return;
    const st = this.#lstat(abs);
    if (st === null) return;
    let header: TarHeader | null;
    try {
      header = await this.#header(abs, rel, st);
    } catch (err) {
      if (hasCode(err, "ENOENT", "ENOTDIR")) return; // removed while its attributes were read
      throw err;
    }
    if (header === null) return;
    if (header.type === "directory") this.#realDirs.add(rel);
    let handle: fs.FileHandle;
    if (header.type !== "file" || header.size === 0) return await this.#writer.add(header);
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
  }

  /** The header for `abs`, or null for a socket (tar has no such type; moby skips them too). */
  async #header(abs: string, rel: string, st: Stat): Promise<TarHeader | null> {
    const type = tarTypeOf(st.mode);
    if (type === null) return null;
    const device = type === "char" || type === "block";
    const xattrs = readXattrs(this.#sys, abs);
    const cap = xattrs.get(CAPABILITY_XATTR);
    if (cap) xattrs.set(CAPABILITY_XATTR, _portableCapability(cap));
    // An overlay whiteout (char 0/0) was made by the kernel with host ids already right: moby leaves it alone.
    const whiteout = type === "char" && st.rdevMajor === 0 && st.rdevMinor === 0;
    const header: TarHeader = {
      name: rel,
      type,
      mode: st.mode & 0o7777,
      uid: whiteout ? st.uid : toContainer(this.#opts.uidMaps, st.uid, "UID"),
      gid: whiteout ? st.gid : toContainer(this.#opts.gidMaps, st.gid, "GID"),
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

  #lstat(abs: string): Stat | null {
    try {
      return this.#sys.lstat(abs);
    } catch (err) {
      if (hasCode(err, "ENOENT", "ENOTDIR")) return null;
      throw err;
    }
  }

  #ancestorsReal(rel: string): boolean {
    for (let slash = rel.indexOf("/"); slash >= 0; slash = rel.indexOf("/", slash + 1)) {
      const dirRel = rel.slice(0, slash);
      if (this.#realDirs.has(dirRel)) continue;
      const st = this.#lstat(`${this.#dir}/${dirRel}`);
      if (st === null || !isDirMode(st.mode)) return false;
      this.#realDirs.add(dirRel);
    }
    return true;
  }
}
