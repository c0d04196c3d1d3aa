/**
 * A full-fidelity copy of a layer tree (what vfs does for every new layer): content reflinked
 * where the filesystem can share extents, else copied in the kernel; hardlinks, devices, owners,
 * modes, every xattr and nanosecond times kept, so `changesDirs(copy, src)` finds nothing.
 */
import * as fs from "node:fs/promises";
import { StrataError, hasCode } from "../core/errors.ts";
import type { Stat, Sys } from "../sys/types.ts";
import { isDirMode, S_IF } from "./_file-type.ts";
import { readXattrs, setMetadata } from "./_metadata.ts";

/** Files copied at once: enough to keep the disk busy with small files, few enough for the fd limit. */
const CONCURRENCY = 16;
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
  /** Hardlinked inodes → the copy of their first path, once it exists. */
  #links = new Map<bigint, Promise<string>>();
  /** Directories whose metadata is set once everything inside them is written. */
  #dirs: Array<[string, string, Stat]> = [];
  #pool = new Set<Promise<void>>();
  #failure: { err: unknown } | undefined;

  constructor(sys: Sys) {
    this.#sys = sys;
  }

  async run(src: string, dst: string, st: Stat): Promise<void> {
    await this.#mkdir(dst, true);
    this.#dirs.push([src, dst, st]);
    try {
      await this.#walk(src, dst);
    } finally {
      await Promise.all(this.#pool);
    }
    if (this.#failure) throw this.#failure.err;
    // Deepest first, though any order would do: setting a directory's times does not touch its parent's.
    for (const [s, d, dirSt] of this.#dirs.reverse()) this.#metadata(s, d, dirSt);
  }

  async #walk(src: string, dst: string): Promise<void> {
    for (const e of this.#sys.lreaddirTypes(src)) {
      const s = `${src}/${e.name}`;
      const d = `${dst}/${e.name}`;
      const st = this.#sys.lstat(s);
      const type = st.mode & S_IF.MT;
      if (type === S_IF.DIR) {
        await this.#mkdir(d, false);
        this.#dirs.push([s, d, st]);
        await this.#walk(s, d);
        continue;
      }
      if (type === S_IF.SOCK) continue;
      if (st.nlink > 1) {
        const first = this.#links.get(st.ino);
        if (first !== undefined) {
          await this.#spawn(async () => await fs.link(await first, d));
          continue;
        }
        const { done } = await this.#spawn(() => this.#copyNonDir(s, d, st));
        const copied = done.then(() => d);
        copied.catch(() => {}); // the pool reports the failure; a later link sees it too
        this.#links.set(st.ino, copied);
        continue;
      }
      await this.#spawn(() => this.#copyNonDir(s, d, st));
    }
  }

  /** Start `task` once a slot is free. Its promise comes back wrapped, so awaiting this waits for the slot only. */
  async #spawn(task: () => Promise<void>): Promise<{ done: Promise<void> }> {
    while (this.#pool.size >= CONCURRENCY) await Promise.race(this.#pool);
    if (this.#failure) throw this.#failure.err;
    const done = task();
    const tracked: Promise<void> = done
      .then(() => {}, (err) => void (this.#failure ??= { err }))
      .finally(() => this.#pool.delete(tracked));
    this.#pool.add(tracked);
    return { done };
  }

  async #copyNonDir(s: string, d: string, st: Stat): Promise<void> {
    const type = st.mode & S_IF.MT;
    if (type === S_IF.REG) await this.#copyFile(s, d);
    else if (type === S_IF.LNK) await fs.symlink(await fs.readlink(s), d);
    else this.#sys.mknod(d, type | (st.mode & 0o777), st.rdevMajor, st.rdevMinor);
    this.#metadata(s, d, st);
  }

  async #copyFile(s: string, d: string): Promise<void> {
    if (this.#clone) {
      const from = await fs.open(s, "r");
      try {
        const to = await fs.open(d, "wx", 0o600);
        try {
          this.#sys.ficlone(from.fd, to.fd);
          return;
        } catch (err) {
          if (!hasCode(err, ...CLONE_REFUSED)) throw err;
          this.#clone = false;
        } finally {
          await to.close();
        }
      } finally {
        await from.close();
      }
    }
    // copy_file_range underneath on Bun and Deno: the bytes never pass through JavaScript.
    await fs.copyFile(s, d);
  }

  #metadata(s: string, d: string, st: Stat): void {
    const meta = {
      uid: st.uid,
      gid: st.gid,
      mode: st.mode,
      xattrs: readXattrs(this.#sys, s),
      atime: st.atime,
      mtime: st.mtime,
      symlink: (st.mode & S_IF.MT) === S_IF.LNK,
    };
    setMetadata(this.#sys, d, meta);
  }

  async #mkdir(d: string, root: boolean): Promise<void> {
    try {
      await fs.mkdir(d, { mode: 0o700 });
    } catch (err) {
      if (!(root && hasCode(err, "EEXIST") && isDirMode(this.#sys.lstat(d).mode))) throw err;
    }
  }
}
