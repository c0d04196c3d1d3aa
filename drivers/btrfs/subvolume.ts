/**
 * Deleting a subvolume with whatever a container made inside it: nested subvolumes cannot be
 * destroyed through their parent (SNAP_DESTROY says ENOTEMPTY), so they go first, deepest first,
 * as moby's subvolDelete does. A read-only subvolume's entries cannot be unlinked, so each one is
 * made writable before its children go. The walk works on directory fds, each opened beneath its
 * parent with no symlink or mount crossing (`Sys.openBeneath`), and tells a subvolume root by the
 * subvolume id of the fd it opened, so a tree changed under it (a directory swapped for a
 * symlink to the host's own subvolumes) can never lead it outside the tree it was given.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { hasCode } from "../../src/core/errors.ts";
import { ownEntry } from "../../src/store/own.ts";
import { removeBeneath } from "../../src/store/remove-tree.ts";
import { DT, O, RENAME, type Sys } from "../../src/sys/types.ts";

/** Directory fds one walk holds at most; deeper subtrees are moved up to the tree's top first. */
const MAX_OPEN_DEPTH = 64;
/** The name a too-deep subtree gets at the top of the tree. */
const DEEP_PREFIX = ".strata-deep-";

/** `openBeneath` of a directory entry, or -1 when it is gone or no longer a directory. */
function _openDir(sys: Sys, dirfd: number, name: string): number {
  try {
    return sys.openBeneath(dirfd, name, O.DIRECTORY);
  } catch (err) {
    if (hasCode(err, "ENOENT", "ELOOP", "ENOTDIR")) return -1;
    throw err;
  }
}

/**
 * The id of the subvolume the directory open as `fd` is in; `around` for the empty directory a
 * snapshot shows where its source had a nested subvolume (inode 2, which takes no btrfs ioctl:
 * ENOTTY), as it belongs to the snapshot holding it.
 */
function _subvolId(sys: Sys, fd: number, around: bigint): bigint {
  try {
    return sys.btrfsSubvolIdFd(fd);
  } catch (err) {
    if (hasCode(err, "ENOTTY")) return around;
    throw err;
  }
}

/**
 * Destroy every subvolume below the entry `name` of the directory open as `parent` (in subvolume
 * `parentId`), making it writable first when it is a subvolume root itself. Each subvolume is
 * walked on its own: a subtree deeper than MAX_OPEN_DEPTH is moved up to its subvolume's root
 * (a rename cannot cross subvolumes) and the walk goes again.
 */
function _clear(sys: Sys, parent: number, parentId: bigint, name: string, seq: { n: number }): "subvolume" | "directory" | "gone" {
  let kind: "subvolume" | "directory" | "gone" = "gone";
  for (let again = true; again;) {
    const top = _openDir(sys, parent, name);
    if (top === -1) return kind;
    try {
      const id = _subvolId(sys, top, parentId);
      kind = id !== parentId ? "subvolume" : "directory";
      // Writable first: a read-only subvolume's nested ones cannot be unlinked from it.
      if (kind === "subvolume") sys.btrfsSetReadonlyFd(top, false);
      again = _walk(sys, top, top, id, 1, seq);
    } finally {
      sys.close(top);
    }
  }
  return kind;
}

/** Destroy the subvolumes below the directory open as `fd`, `depth` below `top`, both in subvolume `id`; true when a subtree was moved up. */
function _walk(sys: Sys, top: number, fd: number, id: bigint, depth: number, seq: { n: number }): boolean {
  let again = false;
  for (const e of sys.readdirFd(fd)) {
    if (e.type !== DT.DIR && e.type !== DT.UNKNOWN) continue;
    const child = _openDir(sys, fd, e.name);
    if (child === -1) continue;
    let childId: bigint;
    try {
      childId = _subvolId(sys, child, id);
      // Another subvolume's id right below this directory: the child is that subvolume's root.
      if (childId === id && depth < MAX_OPEN_DEPTH) again = _walk(sys, top, child, id, depth + 1, seq) || again;
    } finally {
      sys.close(child);
    }
    if (childId !== id) {
      if (_clear(sys, fd, id, e.name, seq) === "subvolume") sys.btrfsSubvolDestroyAt(fd, e.name);
    } else if (depth >= MAX_OPEN_DEPTH) {
      sys.renameAt(fd, e.name, top, `${DEEP_PREFIX}${process.pid}-${++seq.n}`, RENAME.NOREPLACE);
      again = true;
    }
  }
  return again;
}

/**
 * Destroy the subvolume `p` and every subvolume inside it. `p` may also be a plain directory (a
 * build that failed before its subvolume existed, a tree with subvolumes in it): its subvolumes
 * are destroyed and the rest removed as any tree (`removeBeneath`).
 */
export async function destroyTree(sys: Sys, p: string): Promise<void> {
  const st = await fs.lstat(p).catch(() => null);
  if (st === null) return;
  const dir = path.dirname(p);
  const name = path.basename(p);
  if (!st.isDirectory()) return await removeBeneath(sys, dir, name);
  const parent = sys.openDir(dir);
  let kind: "subvolume" | "directory" | "gone";
  try {
    kind = _clear(sys, parent, sys.btrfsSubvolIdFd(parent), name, { n: 0 });
    if (kind === "subvolume") sys.btrfsSubvolDestroyAt(parent, name);
  } finally {
    sys.close(parent);
  }
  if (kind === "directory") await removeBeneath(sys, dir, name);
}

/**
 * Remove an entry of the temp dir, as start-up recovery does: a directory (a subvolume being built
 * or removed, a plain one) with `destroyTree`; a symlink or anything else strata did not make as
 * itself, never walked through.
 */
export async function removeTempEntry(sys: Sys, entry: string): Promise<void> {
  if ((await ownEntry(entry, "dir")) === "ok") await destroyTree(sys, entry);
  else await fs.rm(entry, { force: true });
}
