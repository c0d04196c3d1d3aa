/**
 * overlay's parent index, rebuilt from disk at start: a layer's `lower` file names its parent's
 * link first. Read once here rather than at each Remove, where scanning every layer cost 14 ms
 * with 1000 layers and 36 ms with 3000; the driver keeps the index in step under the layer locks.
 */
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import type { Logger } from "../../src/core/log.ts";
import { ParentIndex } from "../../src/core/parent-index.ts";
import type { LayerStore } from "./layers.ts";

/** Lower files read at once: enough to hide the latency, few enough to stay clear of the fd limit. */
const _BATCH = 64;

/** The parent of every layer in the store. */
export async function indexParents(store: LayerStore, log: Logger): Promise<ParentIndex> {
  const index = new ParentIndex();
  // Home may hold directories that are no layer (an ext4 root's lost+found): they have no parent.
  const ids = (await store.ids()).filter((id) => LAYER_ID_PATTERN.test(id));
  for (let at = 0; at < ids.length; at += _BATCH) {
    await Promise.all(ids.slice(at, at + _BATCH).map(async (id) => {
      try {
        if (await store.exists(id)) index.set(id, await store.parentOf(id));
      } catch (err) {
        // One corrupt layer must not keep the rest from starting; it only loses its parent.
        log.warn("cannot read a layer's parent", { id, err: String(err) });
      }
    }));
  }
  return index;
}
