/**
 * The filesystem a stack of lower layers shows, read without mounting it: what overlay would
 * show for one path, resolved layer by layer with its rules (a whiteout or a non-directory hides
 * the path in every layer below; an opaque directory hides the same directory below). Native
 * Changes asks it about the paths present in an upper dir, nothing more, so no lower tree is walked.
 */
import * as path from "node:path";
import { hasCode } from "../../src/core/errors.ts";
import type { Stat, Sys } from "../../src/sys/types.ts";
import { isDir, isOpaque, isWhiteout } from "../../src/archive/whiteouts.ts";

export { isDir, isOpaque, isWhiteout } from "../../src/archive/whiteouts.ts";

/**
 * A read-only view of lower layers, nearest first; lookups are cached for the view's lifetime.
 * @example
 * const view = new LowerView(sys, ["/h/parent/diff", "/h/grandparent/diff"]);
 * view.lookup("/etc/passwd"); // Stat, or null when the parent layer does not show it
 */
export class LowerView {
  #sys: Sys;
  #layers: readonly string[];
  #stats = new Map<string, Stat | null>();
  #opaque = new Map<string, boolean>();

  constructor(sys: Sys, layers: readonly string[]) {
    this.#sys = sys;
    this.#layers = layers;
  }

  #lstat(layer: number, rel: string): Stat | null {
    const key = `${layer}\0${rel}`;
    let st = this.#stats.get(key);
    if (st === undefined) {
      try {
        st = this.#sys.lstat(path.join(this.#layers[layer], rel));
      } catch (err) {
        if (!hasCode(err, "ENOENT", "ENOTDIR")) throw err;
        st = null;
      }
      this.#stats.set(key, st);
    }
    return st;
  }

  #isOpaque(layer: number, rel: string): boolean {
    const key = `${layer}\0${rel}`;
    let v = this.#opaque.get(key);
    if (v === undefined) {
      v = isOpaque(this.#sys, path.join(this.#layers[layer], rel));
      this.#opaque.set(key, v);
    }
    return v;
  }

  /**
   * How layer `layer` treats `rel`'s ancestors: "hidden" (a whiteout or file hides the path here and
   * below), "absent" (this layer has no such ancestors; look further down unless `opaque`), or
   * "present"; `opaque` tells whether an ancestor here hides the layers below.
   */
  #ancestors(layer: number, parts: string[]): { state: "hidden" | "absent" | "present"; opaque: boolean } {
    let opaque = false;
    for (let depth = 1; depth < parts.length; depth++) {
      const prefix = `/${parts.slice(0, depth).join("/")}`;
      const st = this.#lstat(layer, prefix);
      if (st === null) return { state: "absent", opaque };
      if (isWhiteout(st) || !isDir(st)) return { state: "hidden", opaque };
      if (this.#isOpaque(layer, prefix)) opaque = true;
    }
    return { state: "present", opaque };
  }

  /** The layer that shows `rel`, and what it shows, or null when no layer does. */
  #find(rel: string): { layer: number; st: Stat } | null {
    const parts = rel.split("/").filter(Boolean);
    for (let layer = 0; layer < this.#layers.length; layer++) {
      const { state, opaque } = this.#ancestors(layer, parts);
      if (state === "hidden") return null;
      if (state === "present") {
        const st = this.#lstat(layer, rel);
        if (st !== null) return isWhiteout(st) ? null : { layer, st };
      }
      if (opaque) return null;
    }
    return null;
  }

  /** What the layers show at `rel` ("/a/b"), or null when they show nothing there. */
  lookup(rel: string): Stat | null {
    return this.#find(rel)?.st ?? null;
  }

  /** An xattr of what the layers show at `rel`; null when absent (or nothing is shown). */
  xattr(rel: string, name: string): Uint8Array | null {
    const found = this.#find(rel);
    return found === null ? null : this.#sys.lgetxattr(path.join(this.#layers[found.layer], rel), name);
  }

  /** The names the layers show in directory `rel`, with what each is. */
  list(rel: string): Map<string, Stat> {
    const parts = rel.split("/").filter(Boolean);
    const seen = new Set<string>();
    const out = new Map<string, Stat>();
    for (let layer = 0; layer < this.#layers.length; layer++) {
      const { state, opaque } = this.#ancestors(layer, parts);
      if (state === "hidden") break;
      const st = state === "present" ? this.#lstat(layer, rel) : null;
      if (st !== null) {
        if (isWhiteout(st) || !isDir(st)) break;
        for (const e of this.#sys.readdirTypes(path.join(this.#layers[layer], rel))) {
          if (seen.has(e.name)) continue;
          seen.add(e.name);
          const child = this.#lstat(layer, path.join(rel, e.name));
          if (child !== null && !isWhiteout(child)) out.set(e.name, child);
        }
        if (this.#isOpaque(layer, rel)) break;
      }
      if (opaque) break;
    }
    return out;
  }
}
