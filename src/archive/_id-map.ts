/**
 * UID/GID translation through the daemon's user-namespace maps (`--userns-remap`): a layer tar
 * carries container ids, the files on disk carry host ids.
 */
import type { IdMap } from "../core/driver.ts";
import { InvalidLayerError, StrataError } from "../core/errors.ts";

function _shift(maps: readonly IdMap[], id: number, from: "container_id" | "host_id", to: "container_id" | "host_id"): number | undefined {
  for (const m of maps) {
    if (id >= m[from] && id < m[from] + m.size) return m[to] + (id - m[from]);
  }
  return undefined;
}

/**
 * A container id as the host sees it; unchanged when there are no maps.
 * Throws InvalidLayerError when the layer uses an id the maps do not cover (moby does the same).
 * @example
 * toHost([{ container_id: 0, host_id: 100000, size: 65536 }], 33, "UID"); // 100033
 */
export function toHost(maps: readonly IdMap[] | undefined, id: number, kind: "UID" | "GID"): number {
  if (!maps || maps.length === 0) return id;
  const host = _shift(maps, id, "container_id", "host_id");
  if (host === undefined) throw new InvalidLayerError(`Container ${kind} ${id} cannot be mapped to a host ${kind}`);
  return host;
}

/**
 * A host id as the container sees it; unchanged when there are no maps.
 * Throws when the id lies outside the maps: such a file cannot be represented in the layer.
 * @example
 * toContainer([{ container_id: 0, host_id: 100000, size: 65536 }], 100033, "UID"); // 33
 */
export function toContainer(maps: readonly IdMap[] | undefined, id: number, kind: "UID" | "GID"): number {
  if (!maps || maps.length === 0) return id;
  const container = _shift(maps, id, "host_id", "container_id");
  if (container === undefined) throw new StrataError(`Host ${kind} ${id} cannot be mapped to a container ${kind}`);
  return container;
}
