/**
 * Keeping a layer's writes inside its directory. Entry names are cleaned lexically, and every
 * directory on the way to a target is checked to be a real directory (never a symlink) before
 * anything is written through it. Directories already checked or created are remembered in a tree,
 * so an archive of 10k files costs one lstat per directory, not per component of every entry.
 */
import { unlinkSync } from "node:fs";
import * as fs from "node:fs/promises";
import { InvalidLayerError, hasCode } from "../core/errors.ts";
import type { Sys, Timespec } from "../sys/types.ts";
import { isDirMode, S_IF } from "./_file-type.ts";

/**
 * An archive path made relative to the layer root: leading "/" and "./" dropped, "." and empty
 * components removed, ".." applied. "" is the root itself. Throws InvalidLayerError naming `what`
 * when ".." would climb above the root.
 * @example
 * cleanEntryName("/./usr//lib/../bin/", "/./usr//lib/../bin/"); // "usr/bin"
 */
export function cleanEntryName(name: string, what: string): string {
  const parts: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part !== "..") parts.push(part);
    else if (parts.pop() === undefined) throw new InvalidLayerError(`Invalid layer entry "${what}": it points outside the layer`);
  }
  return parts.join("/");
}

/** The parent of a cleaned relative path ("" for a top-level name). */
export function parentOf(rel: string): string {
  const slash = rel.lastIndexOf("/");
  return slash < 0 ? "" : rel.slice(0, slash);
}

/** The last component of a cleaned relative path. */
export function baseOf(rel: string): string {
  return rel.slice(rel.lastIndexOf("/") + 1);
}

/** A directory known to be real, with the time to give it once the apply is done. */
class _Node {
  children = new Map<string, _Node>();
  mtime?: Timespec;
}

/** A layer root and the real directories known inside it. */
export class ConfinedRoot {
  readonly root: string;
  #sys: Sys;
  #top = new _Node();

  constructor(root: string, sys: Sys) {
    this.root = root;
    this.#sys = sys;
  }

  /** The absolute path of a cleaned relative one. */
  abs(rel: string): string {
    return rel === "" ? this.root : `${this.root}/${rel}`;
  }

  /**
   * Make sure every ancestor of `rel` is a real directory. A missing one is handed to `create`
   * (which must mkdir it) when given, else the call fails; a symlink or other non-directory fails
   * with InvalidLayerError naming `entry`.
   */
  async parents(rel: string, entry: string, create?: (dirRel: string) => Promise<void>): Promise<void> {
    let node = this.#top;
    let at = 0;
    for (let slash = rel.indexOf("/"); slash >= 0; slash = rel.indexOf("/", slash + 1)) {
      const name = rel.slice(at, slash);
      at = slash + 1;
      let child = node.children.get(name);
      if (!child) {
        const dirRel = rel.slice(0, slash);
        const mode = this.lstatMode(dirRel);
        if (mode === null) {
          if (!create) throw new InvalidLayerError(`Invalid layer entry "${entry}": "${dirRel}" does not exist`);
          await create(dirRel);
        } else if ((mode & S_IF.MT) === S_IF.LNK) {
          throw new InvalidLayerError(`Invalid layer entry "${entry}": "${dirRel}" is a symlink`);
        } else if (!isDirMode(mode)) {
          throw new InvalidLayerError(`Invalid layer entry "${entry}": "${dirRel}" is not a directory`);
        }
        child = new _Node();
        node.children.set(name, child);
      }
      node = child;
    }
  }

  /** Record `rel` as a real directory (just made or merged), optionally with its final mtime. */
  markDir(rel: string, mtime?: Timespec): void {
    let node = this.#top;
    if (rel !== "") {
      for (const name of rel.split("/")) {
        let child = node.children.get(name);
        if (!child) node.children.set(name, (child = new _Node()));
        node = child;
      }
    }
    if (mtime) node.mtime = mtime;
  }

  /** Forget `rel` and everything below it (it was removed or replaced). */
  forget(rel: string): void {
    if (rel === "") {
      this.#top.children.clear();
      return;
    }
    let node: _Node | undefined = this.#top;
    const names = rel.split("/");
    for (let i = 0; i < names.length - 1 && node; i++) node = node.children.get(names[i]);
    node?.children.delete(names[names.length - 1]);
  }

  /** Remove `rel` (recursively; fs.rm never follows symlinks inside) and forget it. Missing is fine. */
  async remove(rel: string): Promise<void> {
    this.forget(rel);
    // Most whiteouts name nothing in the layer being applied, and most replaced entries are files:
    // only a directory needs the recursive (thread-pool) removal.
    const mode = this.lstatMode(rel);
    if (mode === null) return;
    if (!isDirMode(mode)) unlinkSync(this.abs(rel));
    else await fs.rm(this.abs(rel), { recursive: true, force: true });
  }

  /** The directories still standing that were given an mtime, as [rel, mtime]. */
  *pendingTimes(): Generator<[string, Timespec]> {
    const stack: Array<[string, _Node]> = [["", this.#top]];
    while (stack.length) {
      const [rel, node] = stack.pop()!;
      if (node.mtime) yield [rel, node.mtime];
      for (const [name, child] of node.children) stack.push([rel === "" ? name : `${rel}/${name}`, child]);
    }
  }

  /** `st_mode` of `rel` (not following a symlink there), or null when it does not exist. */
  lstatMode(rel: string): number | null {
    try {
      return this.#sys.lstat(this.abs(rel)).mode;
    } catch (err) {
      if (hasCode(err, "ENOENT")) return null;
      throw err;
    }
  }
}
