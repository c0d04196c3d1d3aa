/**
 * overlay's native diff: a layer's changes are its upper dir, so ApplyDiff extracts into it and
 * Diff, Changes and DiffSize read it, converting overlay whiteouts to AUFS ones and back. Nothing
 * walks the lower layers. Only valid against the layer's own parent and when overlay neither
 * redirects renamed directories nor copies up metadata alone; the driver checks both.
 */
import * as fs from "node:fs/promises";
import { applyLayer } from "../../src/archive/apply.ts";
import { copyTree } from "../../src/archive/copy-tree.ts";
import { exportUpper } from "../../src/archive/overlay-export.ts";
import { syncParent, syncStaged } from "../../src/store/durable.ts";
import type { Change, IdMap } from "../../src/core/driver.ts";
import { FAULT, faultPoint } from "../../src/core/fault.ts";
import type { Logger } from "../../src/core/log.ts";
import { RENAME, type Sys } from "../../src/sys/types.ts";
import { type LayerStore, TMP_PREFIX } from "./layers.ts";
import { upperChanges, upperSize } from "./upper-changes.ts";

/** The diff operations on upper dirs. Callers hold the layer's lock where they need one. */
export class NativeDiff {
  #store: LayerStore;
  #sys: Sys;
  #log: Logger;
  #maps: { uidMaps: IdMap[]; gidMaps: IdMap[] };

  constructor(store: LayerStore, sys: Sys, log: Logger, maps: { uidMaps: IdMap[]; gidMaps: IdMap[] }) {
    this.#store = store;
    this.#sys = sys;
    this.#log = log;
    this.#maps = maps;
  }

  /**
   * Extract `tar` into a copy of the layer's upper dir, then swap the copy in with one
   * renameat2(RENAME_EXCHANGE): a failed or interrupted apply leaves the layer as it was.
   * A layer with a parent keeps whiteouts as overlay ones; a base layer has nothing to hide, so
   * its whiteouts just delete.
   */
  async apply(id: string, tar: ReadableStream<Uint8Array>): Promise<number> {
    const layout = this.#store.layout;
    const diff = layout.diff(id);
    // The swap below is a rename: staging must be on the upper dir's filesystem.
    const staging = await this.#store.tmpBeside(TMP_PREFIX.apply, id);
    const hasParent = (await this.#store.lowers(id)).length > 0;
    let size: number;
    try {
      if ((await fs.readdir(diff)).length === 0) {
        await fs.mkdir(staging);
        await this.#store.copyRootAttrs(diff, staging);
      } else {
        await copyTree(diff, staging, this.#sys);
      }
      size = await applyLayer(staging, tar, { sys: this.#sys, whiteouts: hasParent ? "overlay" : "delete", ...this.#maps });
      // Written back before the swap makes it the layer (a sized layer's syncfs reaches its image
      // file too: the loop device turns the flush into an fsync of the file).
      await syncStaged(this.#sys, staging, "filesystem");
      faultPoint(FAULT.applyBeforeSwap);
      this.#sys.rename2(staging, diff, RENAME.EXCHANGE);
      await syncParent(this.#sys, diff);
    } catch (err) {
      await tar.cancel().catch(() => {});
      await this.#store.discard(staging, id, "apply");
      throw err;
    }
    // staging now holds the old upper dir; the apply has committed, so a failure here is only logged.
    await this.#store.discard(staging, id, "apply");
    return size;
  }

  /** The layer's upper dir as a tar with AUFS whiteouts. */
  diff(id: string): ReadableStream<Uint8Array> {
    return exportUpper(this.#store.layout.diff(id), { sys: this.#sys, ...this.#maps });
  }

  /** The layer's changes against its own parent. */
  async changes(id: string): Promise<Change[]> {
    return await upperChanges(this.#sys, this.#store.layout.diff(id), await this.#store.lowerDirs(id));
  }

  /** The size of the layer's upper dir. */
  size(id: string): Promise<number> {
    return upperSize(this.#sys, this.#store.layout.diff(id));
  }
}
