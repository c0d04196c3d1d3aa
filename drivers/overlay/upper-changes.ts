/**
 * Native Changes and DiffSize: read a layer's upper dir, and ask its lower layers only about the
 * paths found there (`LowerView`), so no lower tree is walked. Reports what the naive
 * `changesDirs` reports between the mounted layer and its parent: a whiteout is a deletion, an
 * entry the parent lacks an addition, one it has with other metadata (moby's statDifferent, plus
 * security.capability) a modification; a directory is reported when it changed or holds a change,
 * so one copied up only for a change that was undone is not; an opaque directory deletes what the
 * parent had in it.
 */
import { ChangeKind, type Change } from "../../src/core/driver.ts";
import { yieldToLoop } from "../../src/core/yield.ts";
import { comparePaths } from "../../src/archive/changes.ts";
import { type Tree, isGone, withTree } from "../../src/archive/tree.ts";
import type { Dirent, Stat, Sys } from "../../src/sys/types.ts";
import { LowerView, isDir, isOpaque, isWhiteout } from "./lower-view.ts";

const CAPABILITY_XATTR = "security.capability";
/** Paths looked at between two yields to the event loop. */
const YIELD_EVERY = 1024;

/** moby's sameFsTime: equal, or the same second with one side holding whole seconds only. */
function _sameTime(a: Stat["mtime"], b: Stat["mtime"]): boolean {
  return a.sec === b.sec && (a.nsec === b.nsec || a.nsec === 0 || b.nsec === 0);
}

/** moby's statDifferent: type/mode, owner, device; size and mtime for non-directories only. */
function _statDifferent(o: Stat, n: Stat): boolean {
  if (o.mode !== n.mode || o.uid !== n.uid || o.gid !== n.gid) return true;
  if (o.rdevMajor !== n.rdevMajor || o.rdevMinor !== n.rdevMinor) return true;
  return !isDir(n) && (!_sameTime(o.mtime, n.mtime) || o.size !== n.size);
}

function _sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}

/**
 * The changes of the layer whose upper dir is `upper` against the lower layers `lowers` (absolute
 * paths, nearest first), sorted by path.
 * @example
 * await upperChanges(sys, "/h/abc/diff", ["/h/parent/diff"]);
 * // [{ Path: "/etc", Kind: 0 }, { Path: "/etc/hosts", Kind: 0 }, { Path: "/tmp/x", Kind: 2 }]
 */
export async function upperChanges(sys: Sys, upperDir: string, lowers: readonly string[]): Promise<Change[]> {
  return await withTree(sys, upperDir, (upper) => _changes(sys, upper, new LowerView(sys, lowers)));
}

/** The entries of `rel`; none when it is gone or no longer a directory (a running container swapped it). */
function _list(tree: Tree, rel: string): Dirent[] {
  try {
    return tree.list(rel);
  } catch (err) {
    if (rel !== "" && isGone(err)) return [];
    throw err;
  }
}

async function _changes(sys: Sys, upper: Tree, view: LowerView): Promise<Change[]> {
  const changes: Change[] = [];
  let seen = 0;
  const tick = () => (++seen % YIELD_EVERY === 0 ? yieldToLoop() : undefined);

  /** Everything under `rel` is new: all of it is added (whiteouts there hide nothing). */
  const addAll = async (rel: string) => {
    for (const e of _list(upper, rel)) {
      const p = `${rel}/${e.name}`;
      await tick();
      const st = upper.stat(p);
      if (st === null || isWhiteout(st)) continue;
      changes.push({ Path: p, Kind: ChangeKind.Add });
      if (isDir(st)) await addAll(p);
    }
  };

  /** The changes below directory `rel` ("" for the root), which the lowers show as a directory too. */
  const walk = async (rel: string): Promise<boolean> => {
    const before = changes.length;
    const present = new Set<string>();
    for (const e of _list(upper, rel)) {
      const p = `${rel}/${e.name}`;
      present.add(e.name);
      await tick();
      const st = upper.stat(p);
      // Gone since the listing (a running container): it is simply not there.
      if (st === null) continue;
      const old = view.lookup(p);
      if (isWhiteout(st)) {
        if (old !== null) changes.push({ Path: p, Kind: ChangeKind.Delete });
        continue;
      }
      if (old === null) {
        changes.push({ Path: p, Kind: ChangeKind.Add });
        if (isDir(st)) await addAll(p);
        continue;
      }
      const modified = _statDifferent(old, st) ||
        !_sameBytes(view.xattr(p, CAPABILITY_XATTR), sys.lgetxattr(upper.at(p), CAPABILITY_XATTR));
      if (modified) changes.push({ Path: p, Kind: ChangeKind.Modify });
      if (!isDir(st)) continue;
      const inside = isDir(old) ? await walk(p) : (await addAll(p), true);
      if (inside && !modified) changes.push({ Path: p, Kind: ChangeKind.Modify });
    }
    if (isOpaque(sys, upper.at(rel))) {
      for (const name of view.list(rel || "/").keys()) {
        if (!present.has(name)) changes.push({ Path: `${rel}/${name}`, Kind: ChangeKind.Delete });
      }
    }
    return changes.length > before;
  };

  await walk("");
  return changes.sort((a, b) => comparePaths(a.Path, b.Path));
}

/**
 * The bytes a layer's upper dir adds: every non-directory's size (a symlink counts its target's
 * length), each hardlinked inode once; whiteouts are empty. What moby's ChangesSize sums over the
 * layer's changes.
 * @example
 * await upperSize(sys, "/h/abc/diff"); // 1234
 */
export async function upperSize(sys: Sys, upperDir: string): Promise<number> {
  return await withTree(sys, upperDir, (upper) => _size(upper));
}

async function _size(upper: Tree): Promise<number> {
  const inodes = new Set<bigint>();
  let size = 0;
  let seen = 0;
  const walk = async (dir: string) => {
    for (const e of _list(upper, dir)) {
      if (++seen % YIELD_EVERY === 0) await yieldToLoop();
      const st = upper.stat(`${dir}/${e.name}`);
      if (st === null) continue;
      if (isDir(st)) {
        await walk(`${dir}/${e.name}`);
        continue;
      }
      if (st.nlink > 1) {
        if (inodes.has(st.ino)) continue;
        inodes.add(st.ino);
      }
      size += st.size;
    }
  };
  await walk("");
  return size;
}
