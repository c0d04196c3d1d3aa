/**
 * Deleting a subvolume with whatever a container made inside it: nested subvolumes cannot be
 * destroyed through their parent (SNAP_DESTROY says ENOTEMPTY), so they go first, deepest first,
 * as moby's subvolDelete does. A read-only subvolume's entries cannot be unlinked, so each one is
 * made writable before its children go. The walk never follows a symlink (O_NOFOLLOW listings,
 * lstat), so it stays inside the tree it was given.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { DT, type Sys } from "../../src/sys/types.ts";

/** `BTRFS_FIRST_FREE_OBJECTID`: the inode number of every subvolume's root directory. */
const SUBVOL_ROOT_INO = 256n;

/** Whether `p` is the root of a subvolume (on btrfs; the caller knows the filesystem). */
export function isSubvolume(sys: Sys, p: string): boolean {
  const st = sys.lstat(p);
  return (st.mode & 0o170000) === 0o040000 && st.ino === SUBVOL_ROOT_INO;
}

/** The subvolumes below `root` (not `root` itself), each listed after the ones inside it. */
export function nestedSubvolumes(sys: Sys, root: string): string[] {
  const found: string[] = [];
  // An explicit stack: a hostile layer may nest directories deeper than the JS call stack goes.
  const stack: Array<{ dir: string; done: boolean }> = [{ dir: root, done: false }];
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top.done) {
      if (top.dir !== root && isSubvolume(sys, top.dir)) found.push(top.dir);
      continue;
    }
    stack.push({ dir: top.dir, done: true });
    for (const e of sys.lreaddirTypes(top.dir)) {
      if (e.type === DT.DIR) stack.push({ dir: path.join(top.dir, e.name), done: false });
    }
  }
  return found;
}

/**
 * Destroy the subvolume `p` and every subvolume inside it. `p` may also be a plain directory (a
 * build that failed before its subvolume existed): it is removed like any tree.
 */
export async function destroyTree(sys: Sys, p: string): Promise<void> {
  const st = await fs.lstat(p).catch(() => null);
  if (st === null) return;
  if (!st.isDirectory()) return await fs.rm(p, { force: true });
  const own = isSubvolume(sys, p);
  // Writable first: a read-only subvolume's nested ones cannot be unlinked from it.
  if (own) sys.btrfsSetReadonly(p, false);
  for (const sub of nestedSubvolumes(sys, p)) {
    sys.btrfsSetReadonly(sub, false);
    sys.btrfsSubvolDestroy(path.dirname(sub), path.basename(sub));
  }
  if (own) sys.btrfsSubvolDestroy(path.dirname(p), path.basename(p));
  else await fs.rm(p, { recursive: true, force: true });
}
