/**
 * A full-fidelity copy of a layer tree (what vfs does for every new layer): content reflinked
 * where the filesystem can share extents, else copied in the kernel; hardlinks, devices, owners,
 * modes, every xattr and nanosecond times kept, so `changesDirs(copy, src)` finds nothing. Every
 * step is a synchronous syscall (a thread-pool round trip per file cost more than the copy of a
 * small one), with a return to the event loop every few thousand entries or 64 MiB.
 */
import * as fs from "node:fs";
import { StrataError, hasCode } from "../core/errors.ts";
import { O, type Stat, type Sys } from "../sys/types.ts";
import { isDirMode, S_IF } from "./_file-type.ts";
import { yieldToLoop } from "../core/yield.ts";
import { type Metadata, readXattrs, setMetadata, setMetadataFd } from "./_metadata.ts";

/** One copy_file_range call copies at most this much, so a large file does not hold the event loop. */
const COPY_SLICE = 16 * 1024 * 1024;
/** Work (bytes copied, a fixed cost per entry) between two returns to the event loop. */
const YIELD_BYTES = 64 * 1024 * 1024;
const BYTES_PER_ENTRY = 64 * 1024;
/** What ioctl(FICLONE) says when the filesystem (or this pair of files) cannot share extents. */
const CLONE_REFUSED = ["EOPNOTSUPP", "EXDEV", "EINVAL", "ENOTTY"];

/**
 * Copy the directory `src` to `dst` (created; an existing empty directory is fine). Sockets are
 * skipped: they mean nothing without the process that listened on them.
 * @example
 * await copyTree("/h/vfs/dir/parent", "/h/vfs/tmp/new-child", sys);
 */
export async function copyTree(src: string, dst: string, sys: Sys): Promise<void> {
  const st = sys.lstat(src);
  if (!isDirMode(st.mode)) throw new StrataError(`Cannot copy "${src}": it is not a directory`);
  await new _Copier(sys).run(src, dst, st);
}

class _Copier {
  #sys: Sys;
  /** Cleared the first time the filesystem refuses a reflink: no point asking for every file. */
  #clone = true;
  /** Hardlinked inodes → the copy of their first path. */
  #links = new Map<bigint, string>();
  /** Directories whose metadata is set once everything inside them is written. */
  #dirs: Array<[string, string, Stat]> = [];
  /** Bytes copied since the last return to the event loop. */
  #sinceYield = 0;

  constructor(sys: Sys) {
    this.#sys = sys;
  }

  async run(src: string, dst: string, st: Stat): Promise<void> {
    this.#mkdir(dst, true);
    this.#dirs.push([src, dst, st]);
    await this.#walk(src, dst);
    // Deepest first, though any order would do: setting a directory's times does not touch its parent's.
    for (const [s, d, dirSt] of this.#dirs.reverse()) setMetadata(this.#sys, d, this.#meta(s, dirSt));
  }

  async #walk(src: string, dst: string): Promise<void> {
    for (const e of this.#sys.lreaddirTypes(src)) {
      const s = `${src}/${e.name}`;
      const d = `${dst}/${e.name}`;
      const st = this.#sys.lstat(s);
      const type = st.mode & S_IF.MT;
      if (type === S_IF.DIR) {
        this.#mkdir(d, false);
        this.#dirs.push([s, d, st]);
        await this.#walk(s, d);
        continue;
      }
      if (type === S_IF.SOCK) continue;
      if (st.nlink > 1) {
        const first = this.#links.get(st.ino);
        if (first !== undefined) {
          fs.linkSync(first, d);
          continue;
        }
        this.#links.set(st.ino, d);
      }
      if (type === S_IF.REG) await this.#copyFile(s, d, st);
      else {
        if (type === S_IF.LNK) fs.symlinkSync(fs.readlinkSync(s), d);
        else this.#sys.mknod(d, type | (st.mode & 0o777), st.rdevMajor, st.rdevMinor);
        setMetadata(this.#sys, d, this.#meta(s, st));
      }
      if ((this.#sinceYield += BYTES_PER_ENTRY) >= YIELD_BYTES) await this.#yield();
    }
  }

  /**
   * One regular file, on descriptors: the source opened O_NOFOLLOW, the copy created O_EXCL,
   * content reflinked or copied in the kernel a slice at a time, metadata set on the new fd.
   */
  async #copyFile(s: string, d: string, st: Stat): Promise<void> {
    const sys = this.#sys;
    const from = sys.openEntry(s, O.RDONLY);
    try {
      const to = sys.createNew(d, 0o600);
      try {
        if (!this.#reflinked(from, to)) {
          for (;;) {
            const n = sys.copyRange(from, to, COPY_SLICE);
            if (n === 0) break;
            if ((this.#sinceYield += n) >= YIELD_BYTES) await this.#yield();
          }
        }
        setMetadataFd(sys, to, this.#meta(s, st));
      } finally {
        sys.close(to);
      }
    } finally {
      sys.close(from);
    }
  }

  #reflinked(from: number, to: number): boolean {
    if (!this.#clone) return false;
    try {
      this.#sys.ficlone(from, to);
      return true;
    } catch (err) {
      if (!hasCode(err, ...CLONE_REFUSED)) throw err;
      this.#clone = false;
      return false;
    }
  }

  /** Let other calls run: the copy is synchronous syscalls, a large tree would hold the loop. */
  async #yield(): Promise<void> {
    this.#sinceYield = 0;
    await yieldToLoop();
  }

  #meta(s: string, st: Stat): Metadata {
    return {
      uid: st.uid,
      gid: st.gid,
      mode: st.mode,
      xattrs: readXattrs(this.#sys, s),
      atime: st.atime,
      mtime: st.mtime,
      symlink: (st.mode & S_IF.MT) === S_IF.LNK,
    };
  }

  #mkdir(d: string, root: boolean): void {
    try {
      fs.mkdirSync(d, { mode: 0o700 });
    } catch (err) {
      if (!(root && hasCode(err, "EEXIST") && isDirMode(this.#sys.lstat(d).mode))) throw err;
    }
  }
}
