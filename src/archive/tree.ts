/**
 * A directory tree read through file descriptors, for walks of trees someone else may be changing
 * (a running container's upper dir): the root is opened once, every directory below it with
 * openat2 beneath the root (no symlink, no mount crossing), and every entry is looked at by its
 * name inside a directory already open. A directory swapped for a symlink after it was listed is
 * never followed: its walk simply finds nothing there.
 */
import { existsSync } from "node:fs";
import { StrataError, hasCode } from "../core/errors.ts";
import { O, type Dirent, type Stat, type Sys } from "../sys/types.ts";

/** Directory fds one tree keeps open for the entries looked at next. */
const DIR_CACHE = 16;

/** "a/b" from "/a/b", "a/b/" or "a//b"; "" for the root. */
function _norm(rel: string): string {
  return rel.split("/").filter((c) => c !== "" && c !== ".").join("/");
}

/** Errors that mean "not there any more, or reached through something that is no directory now". */
export function isGone(err: unknown): boolean {
  return hasCode(err, "ENOENT", "ENOTDIR", "ELOOP", "EXDEV");
}

export class Tree {
  readonly root: string;
  #sys: Sys;
  #rootFd: number;
  /** Open directories by relative path, least recently used first. */
  #dirs = new Map<string, number>();

  private constructor(sys: Sys, root: string, rootFd: number) {
    this.#sys = sys;
    this.root = root;
    this.#rootFd = rootFd;
  }

  /**
   * Open the tree at `root` (itself not a symlink). Close it when done.
   * @example
   * const tree = Tree.open(sys, "/h/abc/diff");
   * try { tree.list(""); } finally { tree.close(); }
   */
  static open(sys: Sys, root: string): Tree {
    // `at` names entries through /proc/self/fd; without procfs there is no way to do that safely.
    if (!existsSync("/proc/self/fd")) throw new StrataError(`Cannot walk "${root}": /proc is not mounted`);
    return new Tree(sys, root.replace(/\/+$/, "") || "/", sys.openDir(root));
  }

  /** Close every descriptor the tree holds. */
  close(): void {
    for (const fd of this.#dirs.values()) this.#sys.close(fd);
    this.#dirs.clear();
    this.#sys.close(this.#rootFd);
  }

  /** The open directory `dir` (normalised), opened beneath the root when not cached. */
  #dir(dir: string): number {
    if (dir === "") return this.#rootFd;
    const hit = this.#dirs.get(dir);
    if (hit !== undefined) {
      this.#dirs.delete(dir);
      this.#dirs.set(dir, hit);
      return hit;
    }
    const fd = this.#sys.openBeneath(this.#rootFd, dir, O.DIRECTORY);
    this.#dirs.set(dir, fd);
    if (this.#dirs.size > DIR_CACHE) {
      const [oldest, oldFd] = this.#dirs.entries().next().value!;
      this.#dirs.delete(oldest);
      this.#sys.close(oldFd);
    }
    return fd;
  }

  /** [open parent dir fd, last component] of `rel`; the root is [root fd, "."]. */
  #split(rel: string): [number, string] {
    const n = _norm(rel);
    if (n === "") return [this.#rootFd, "."];
    const slash = n.lastIndexOf("/");
    return [this.#dir(slash < 0 ? "" : n.slice(0, slash)), n.slice(slash + 1)];
  }

  /** The entries of directory `rel`; throws ENOTDIR/ELOOP when it is not a real directory below the root. */
  list(rel: string): Dirent[] {
    const [parent, name] = this.#split(rel);
    const fd = this.#sys.openBeneath(parent, name, O.DIRECTORY);
    try {
      return this.#sys.readdirFd(fd);
    } finally {
      this.#sys.close(fd);
    }
  }

  /**
   * The entries of directory `rel` with their stats, each looked at inside the one descriptor the
   * listing used (the fastest walk: no path is resolved per entry); an entry gone since the
   * listing has a null stat.
   */
  listStat(rel: string): { name: string; stat: Stat | null }[] {
    const [parent, name] = this.#split(rel);
    const fd = this.#sys.openBeneath(parent, name, O.DIRECTORY);
    try {
      return this.#sys.readdirFd(fd).map((e) => {
        try {
          return { name: e.name, stat: this.#sys.statAt(fd, e.name) };
        } catch (err) {
          if (isGone(err)) return { name: e.name, stat: null };
          throw err;
        }
      });
    } finally {
      this.#sys.close(fd);
    }
  }

  /** The entry `rel` itself (a symlink is not followed), or null when it is gone. */
  stat(rel: string): Stat | null {
    try {
      const [parent, name] = this.#split(rel);
      return this.#sys.statAt(parent, name);
    } catch (err) {
      if (isGone(err)) return null;
      throw err;
    }
  }

  /**
   * Open the entry `rel` itself (`openat` in its directory's descriptor, O_NOFOLLOW: ELOOP for a
   * symlink), resolving no path; the caller closes it.
   */
  open(rel: string, flags: number): number {
    const [parent, name] = this.#split(rel);
    return this.#sys.openAt(parent, name, flags);
  }

  /**
   * A path naming `rel` through the descriptor of its directory (`/proc/self/fd/N/name`), for
   * calls that do not follow the last component (l*xattr, readlink, open with O_NOFOLLOW). It is
   * valid until the next call on this tree.
   */
  at(rel: string): string {
    const [parent, name] = this.#split(rel);
    return `/proc/self/fd/${parent}/${name}`;
  }
}

/**
 * Run `fn` on the tree at `root`, closed after.
 * @example
 * const names = await withTree(sys, upper, async (tree) => tree.list("").map((e) => e.name));
 */
export async function withTree<T>(sys: Sys, root: string, fn: (tree: Tree) => Promise<T>): Promise<T> {
  const tree = Tree.open(sys, root);
  try {
    return await fn(tree);
  } finally {
    tree.close();
  }
}
