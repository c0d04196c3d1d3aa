/**
 * Which layer each layer was created on, held in memory: what Remove asks before it deletes a
 * layer, and what Diff compares with when given no parent. Drivers rebuild it from disk at start
 * (vfs from its records, overlay from its lower files) and update it under the layer's lock, so
 * it is a cache of what is on disk, never the only copy.
 */
import { layerHasChildren } from "./errors.ts";

/** Child → parent ("" for a base layer). */
export class ParentIndex {
  #parents = new Map<string, string>();

  /** Forget everything (before a rebuild). */
  clear(): void {
    this.#parents.clear();
  }

  /** `id` now exists on `parent`. */
  set(id: string, parent: string): void {
    this.#parents.set(id, parent);
  }

  /** `id` is gone. */
  delete(id: string): void {
    this.#parents.delete(id);
  }

  /** The layer's parent; "" for a base layer or one whose parent is not known. */
  parentOf(id: string): string {
    return this.#parents.get(id) ?? "";
  }

  /** Every layer that has a child, each once. */
  parents(): Set<string> {
    const out = new Set<string>();
    for (const parent of this.#parents.values()) if (parent !== "") out.add(parent);
    return out;
  }

  /** The layers created on `id`, sorted. */
  childrenOf(id: string): string[] {
    const out: string[] = [];
    for (const [child, parent] of this.#parents) if (parent === id) out.push(child);
    return out.sort();
  }

  /**
   * Throw BusyError (409) when layers are built on `id`.
   * @example
   * index.assertNoChildren("base"); // Cannot remove layer "base": layer "c" is built on it
   */
  assertNoChildren(id: string): void {
    const children = this.childrenOf(id);
    if (children.length > 0) throw layerHasChildren(id, children);
  }
}
