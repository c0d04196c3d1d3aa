/**
 * Which layers are built on a layer, so that Remove can refuse to pull it from under them. Read
 * from disk at each call rather than kept in memory: a child's `lower` file names its parent's
 * link first, so the answer is right after any crash with nothing to keep in step with Create,
 * Remove and recovery. The `committed` marker cannot stand in: a crash between a child's rename
 * and the marker's write leaves a child whose parent has none.
 */
import { layerHasChildren } from "../../src/errors.ts";
import { LAYER_ID_PATTERN } from "../../src/layer-id.ts";
import type { LayerStore } from "./layers.ts";

/** Lower files read at once: enough to hide the latency, few enough to stay clear of the fd limit. */
const _BATCH = 64;

/** The layers whose parent is `id`, sorted; none for an unknown layer. */
export async function childrenOf(store: LayerStore, id: string): Promise<string[]> {
  const linkId = await store.linkId(id).catch(() => null);
  if (linkId === null) return [];
  const parentLink = store.layout.link(linkId);
  // Home may hold directories that are no layer (an ext4 root's lost+found): they have no parent.
  const ids = (await store.ids()).filter((other) => other !== id && LAYER_ID_PATTERN.test(other));
  const children: string[] = [];
  for (let at = 0; at < ids.length; at += _BATCH) {
    const batch = ids.slice(at, at + _BATCH);
    const firsts = await Promise.all(batch.map(async (other) => (await store.lowers(other))[0]));
    batch.forEach((other, i) => {
      const first = firsts[i];
      if (first !== undefined && store.layout.absolute(first) === parentLink) children.push(other);
    });
  }
  return children.sort();
}

/**
 * Throw BusyError when layers are built on `id`. The caller holds `id`'s lock, which Create
 * holds too for the parent of the layer it makes, so no child can appear behind the check.
 */
export async function assertNoChildren(store: LayerStore, id: string): Promise<void> {
  const children = await childrenOf(store, id);
  if (children.length > 0) throw layerHasChildren(id, children);
}
