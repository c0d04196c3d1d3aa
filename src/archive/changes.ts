/**
 * moby's `ChangesDirs`: what a layer directory adds, modifies and deletes compared with its
 * parent's directory, by walking both trees side by side (no symlink is ever followed).
 */
import type { Change } from "./change.ts";
import { ChangeKind } from "./change.ts";
import type { Dirent, Stat, Sys } from "../sys/types.ts";
import { Tree, isGone, withTree } from "./tree.ts";
import { isDirMode } from "./_file-type.ts";
import { yieldToLoop } from "../core/yield.ts";

/** The only xattr whose change counts as a modification (moby compares it alone). */
const CAPABILITY_XATTR = "security.capability";
/** Paths looked at between two yields to the event loop. */
const YIELD_EVERY = 1024;

/**
 * Compare two paths by their UTF-8 bytes, as Go's string comparison (and so moby's sort) does.
 * @example
 * ["/a/b", "/a.b", "/a"].sort(comparePaths); // ["/a", "/a.b", "/a/b"]
 */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // UTF-16 order differs from UTF-8 order only where surrogates meet U+E000..U+FFFF: move
    // U+E000..U+FFFF down by 0x800 and the surrogates (astral characters) above them.
    if (x >= 0xd800 && y >= 0xd800) {
      x = x < 0xe000 ? x + 0x2000 : x - 0x800;
      y = y < 0xe000 ? y + 0x2000 : y - 0x800;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** Two mtimes the same, allowing for a filesystem (or a tar) that kept whole seconds only (moby's sameFsTime). */
function _sameTime(a: Stat["mtime"], b: Stat["mtime"]): boolean {
  return a.sec === b.sec && (a.nsec === b.nsec || a.nsec === 0 || b.nsec === 0);
}

/** moby's statDifferent: type/mode, owner, device number; and for non-directories mtime and size. */
function _statDifferent(o: Stat, n: Stat): boolean {
  if (o.mode !== n.mode || o.uid !== n.uid || o.gid !== n.gid) return true;
  if (o.rdevMajor !== n.rdevMajor || o.rdevMinor !== n.rdevMinor) return true;
  // A directory's size and mtime say nothing about its content (moby#9874).
  return !isDirMode(n.mode) && (!_sameTime(o.mtime, n.mtime) || o.size !== n.size);
}

/** Without trailing slashes, so "/x" can be appended; "/" stays "/" ("//x" still names /x). */
function _trimSlash(dir: string): string {
  const trimmed = dir.replace(/\/+$/, "");
  return trimmed === "" ? "/" : trimmed;
}

function _sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}

class _Walk {
  readonly changes: Change[] = [];
  #sys: Sys;
  #layer: Tree;
  #parent: Tree | null;
  #seen = 0;

  constructor(sys: Sys, layer: Tree, parent: Tree | null) {
    this.#sys = sys;
    this.#layer = layer;
    this.#parent = parent;
  }

  /** The entries of `rel` in `tree`; none when it is gone or no longer a directory (a running container). */
  #list(tree: Tree, rel: string): Dirent[] {
    try {
      return tree.list(rel);
    } catch (err) {
      if (rel !== "" && isGone(err)) return [];
      throw err;
    }
  }

  /**
   * Compare the children of the layer directory `rel` with those of the parent's `rel` (when that
   * is a directory too); true when anything below `rel` changed.
   */
  async dir(rel: string, parentIsDir: boolean): Promise<boolean> {
    const before = this.changes.length;
    const sys = this.#sys;
    const parent = parentIsDir ? this.#parent : null;
    const oldNames = new Set<string>();
    if (parent !== null) for (const e of this.#list(parent, rel)) oldNames.add(e.name);
    for (const e of this.#list(this.#layer, rel)) {
      const child = `${rel}/${e.name}`;
      if (++this.#seen % YIELD_EVERY === 0) await yieldToLoop();
      const st = this.#layer.stat(child);
      // Gone since the listing (a running container): it is simply not there.
      if (st === null) continue;
      const isDir = isDirMode(st.mode);
      const old = parent !== null && oldNames.delete(e.name) ? parent.stat(child) : null;
      if (old === null) {
        this.changes.push({ Path: child, Kind: ChangeKind.Add });
        if (isDir) await this.dir(child, false);
        continue;
      }
      const modified = _statDifferent(old, st) ||
        !_sameBytes(sys.lgetxattr(parent!.at(child), CAPABILITY_XATTR), sys.lgetxattr(this.#layer.at(child), CAPABILITY_XATTR));
      if (modified) this.changes.push({ Path: child, Kind: ChangeKind.Modify });
      // A directory that replaced a file has only additions below it; a file that replaced a
      // directory hides the old children, which moby does not list as deleted either.
      if (isDir && (await this.dir(child, isDirMode(old.mode))) && !modified) {
        this.changes.push({ Path: child, Kind: ChangeKind.Modify });
      }
    }
    // Only the top of a deleted tree is reported; the whiteout hides the rest.
    for (const name of oldNames) this.changes.push({ Path: `${rel}/${name}`, Kind: ChangeKind.Delete });
    return this.changes.length > before;
  }
}

/**
 * The changes of `layer` against `parent` (null: against nothing, so everything is added),
 * sorted by path; paths start with "/". A directory holding a change is reported as modified
 * (so its metadata travels with the diff); the root never is.
 * @example
 * await changesDirs("/h/dir/container", "/h/dir/container-init", sys);
 * // [{ Path: "/etc", Kind: 0 }, { Path: "/etc/hosts", Kind: 0 }, { Path: "/tmp/x", Kind: 1 }]
 */
export async function changesDirs(layer: string, parent: string | null, sys: Sys): Promise<Change[]> {
  return await withTree(sys, _trimSlash(layer), async (layerTree) => {
    const parentTree = parent === null ? null : Tree.open(sys, _trimSlash(parent));
    try {
      const walk = new _Walk(sys, layerTree, parentTree);
      await walk.dir("", parent !== null);
      return walk.changes.sort((a, b) => comparePaths(a.Path, b.Path));
    } finally {
      parentTree?.close();
    }
  });
}
