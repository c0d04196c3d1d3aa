/**
 * Deleting a tree under Home without ever acting outside it. Every step works on directory file
 * descriptors: the tree is opened beneath Home with openat2 (no symlink, no mount crossing), each
 * entry is unlinked by name inside the directory already open, and each subdirectory is opened
 * the same way from its parent. A path is never resolved twice, so nothing swapped in meanwhile
 * (a symlink a container planted where a directory was, a mount) is followed: a symlink is
 * unlinked as a link, a mount point is refused.
 */
import * as path from "node:path";
import { StrataError, hasCode } from "../core/errors.ts";
import { type FaultName, faultPoint } from "../core/fault.ts";
import { yieldToLoop } from "../core/yield.ts";
import { DT, O, RENAME, type Sys } from "../sys/types.ts";

/** Directory fds one removal holds at most; deeper subtrees are moved up to the tree's top first. */
const MAX_OPEN_DEPTH = 64;
/** Entries removed between two returns to the event loop. */
const YIELD_EVERY = 1024;
/** st_mode's type bits and a directory's (<sys/stat.h>). */
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
/** The name a too-deep subtree gets at the top of the tree it is removed from. */
const DEEP_PREFIX = ".strata-deep-";

/**
 * Remove `rel` below `home` and everything in it: a directory tree, or a file or symlink (as
 * itself). Missing is fine. Throws StrataError when the tree holds a mount point or `rel` lies
 * through a symlink; what was removed by then stays removed. `fault`: a crash point passed once a
 * few entries are gone (the recovery tests' "cut short in the middle of a removal").
 * @example
 * await removeBeneath(sys, "/var/lib/strata/overlay", ".tmp/rm-abc-12-3");
 */
export async function removeBeneath(sys: Sys, home: string, rel: string, fault?: FaultName): Promise<void> {
  const name = path.basename(rel);
  const parentRel = path.dirname(rel);
  if (name === "" || name === "." || name === ".." || path.isAbsolute(rel)) {
    throw new StrataError(`Refusing to remove "${rel}": not a path below "${home}"`);
  }
  const homeFd = sys.openDir(home);
  let parentFd = homeFd;
  try {
    if (parentRel !== ".") parentFd = openOrMissing(sys, homeFd, parentRel, home);
    if (parentFd === -1) return;
    await removeEntry(sys, parentFd, name, fault);
  } catch (err) {
    throw explain(err, path.join(home, rel));
  } finally {
    if (parentFd !== homeFd && parentFd !== -1) sys.close(parentFd);
    sys.close(homeFd);
  }
}

/** `openBeneath` of a directory, or -1 when it is not there. */
function openOrMissing(sys: Sys, dirfd: number, rel: string, what: string): number {
  try {
    return sys.openBeneath(dirfd, rel, O.DIRECTORY);
  } catch (err) {
    if (hasCode(err, "ENOENT")) return -1;
    throw explain(err, path.join(what, rel));
  }
}

/** A path that led through a link or a mount, in words; other errors as they are. */
function explain(err: unknown, where: string): unknown {
  // O_DIRECTORY makes a symlink on the path ENOTDIR, RESOLVE_NO_SYMLINKS makes it ELOOP.
  if (hasCode(err, "ELOOP", "ENOTDIR")) return new StrataError(`Refusing to remove "${where}": a symbolic link or a file is on its path`);
  if (hasCode(err, "EXDEV")) return new StrataError(`Refusing to remove "${where}": a mount point is on its path or inside it`);
  return err;
}

/** Remove the entry `name` of the directory open as `dirfd`. */
async function removeEntry(sys: Sys, dirfd: number, name: string, fault?: FaultName): Promise<void> {
  let st;
  try {
    st = sys.statAt(dirfd, name);
  } catch (err) {
    if (hasCode(err, "ENOENT")) return;
    throw err;
  }
  if ((st.mode & S_IFMT) !== S_IFDIR) {
    unlinkQuiet(sys, dirfd, name, false);
    return;
  }
  const counter: Counter = { ops: 0, deep: 0, fault };
  // A pass may move subtrees deeper than MAX_OPEN_DEPTH up to the top; go again (on a fresh fd,
  // whose listing starts over) until none is left.
  for (let again = true; again;) {
    const top = sys.openBeneath(dirfd, name, O.DIRECTORY);
    try {
      again = await emptyDir(sys, top, top, 1, counter);
    } finally {
      sys.close(top);
    }
  }
  unlinkQuiet(sys, dirfd, name, true);
}

/** Entries visited so far, subtrees moved up, and the crash point armed for this removal. */
interface Counter {
  ops: number;
  deep: number;
  fault?: FaultName;
}

/** How many entries a removal with a fault point deletes before it passes the point. */
const FAULT_MID_REMOVE_ENTRIES = 3;

/**
 * Empty the directory open as `fd` (depth `depth` below `top`); true when subtrees were moved to
 * `top` and another pass is needed.
 */
async function emptyDir(sys: Sys, top: number, fd: number, depth: number, counter: Counter): Promise<boolean> {
  let again = false;
  for (const e of sys.readdirFd(fd)) {
    if (++counter.ops % YIELD_EVERY === 0) await yieldToLoop();
    if (counter.fault !== undefined && counter.ops === FAULT_MID_REMOVE_ENTRIES + 1) faultPoint(counter.fault);
    // d_type is a hint: a file turned directory meanwhile fails unlinkat with EISDIR and is walked.
    if (e.type !== DT.DIR && e.type !== DT.UNKNOWN) {
      try {
        unlinkQuiet(sys, fd, e.name, false);
        continue;
      } catch (err) {
        if (!hasCode(err, "EISDIR")) throw err;
      }
    }
    if (e.type === DT.UNKNOWN && !isDir(sys, fd, e.name)) {
      unlinkQuiet(sys, fd, e.name, false);
      continue;
    }
    if (depth >= MAX_OPEN_DEPTH) {
      sys.renameAt(fd, e.name, top, `${DEEP_PREFIX}${process.pid}-${++counter.deep}`, RENAME.NOREPLACE);
      again = true;
      continue;
    }
    let child: number;
    try {
      child = sys.openBeneath(fd, e.name, O.DIRECTORY);
    } catch (err) {
      if (hasCode(err, "ENOENT")) continue;
      // Swapped for a symlink or a file since the listing: remove that as itself.
      if (hasCode(err, "ELOOP") || hasCode(err, "ENOTDIR")) {
        unlinkQuiet(sys, fd, e.name, false);
        continue;
      }
      throw err;
    }
    try {
      again = (await emptyDir(sys, top, child, depth + 1, counter)) || again;
    } finally {
      sys.close(child);
    }
    unlinkQuiet(sys, fd, e.name, true);
  }
  return again;
}

function isDir(sys: Sys, fd: number, name: string): boolean {
  try {
    return (sys.statAt(fd, name).mode & S_IFMT) === S_IFDIR;
  } catch (err) {
    if (hasCode(err, "ENOENT")) return false;
    throw err;
  }
}

/** unlinkat that finds nothing to do when the entry is already gone. */
function unlinkQuiet(sys: Sys, fd: number, name: string, dir: boolean): void {
  try {
    sys.unlinkAt(fd, name, dir);
  } catch (err) {
    if (!hasCode(err, "ENOENT")) throw err;
  }
}
