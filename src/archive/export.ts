/**
 * moby's `ExportChanges`: a layer tar of a change list. Added and modified paths are archived
 * from the layer directory with all their metadata; deleted ones become AUFS `.wh.NAME` entries.
 * The tar is produced as its reader pulls it, so a multi-gigabyte commit never sits in memory.
 */
import type { IdMap } from "../core/driver.ts";
import type { Change } from "./change.ts";
import { ChangeKind } from "./change.ts";
import type { Sys } from "../sys/types.ts";
import { EntryWriter, isOverlayWhiteout, whiteoutName } from "./_entry-writer.ts";
import { withTree } from "./tree.ts";
import { comparePaths } from "./changes.ts";
import { TarWriter } from "./tar-writer.ts";

/** Options of `exportChanges`. */
export interface ExportOptions {
  /** Host → container UID map: owners are written as the container sees them. */
  uidMaps?: IdMap[];
  /** Host → container GID map. */
  gidMaps?: IdMap[];
}

/**
 * The tar of `changes` (paths relative to `dir`, starting with "/"), in path order.
 * A path that vanished since the change list was made is left out, as moby does for a running
 * container; any other failure errors the stream.
 * @example
 * const changes = await changesDirs(layerDir, parentDir, sys);
 * return new Response(exportChanges(layerDir, changes, sys));
 */
export function exportChanges(dir: string, changes: Change[], sys: Sys, opts: ExportOptions = {}): ReadableStream<Uint8Array> {
  const writer = new TarWriter();
  const sorted = [...changes].sort((a, b) => comparePaths(a.Path, b.Path));
  withTree(sys, dir, (tree) => _export(new EntryWriter(writer, tree, { sys, ...opts }), sorted))
    .then(() => writer.finish())
    .catch((err) => writer.abort(err));
  return writer.stream;
}

async function _export(entries: EntryWriter, changes: Change[]): Promise<void> {
  for (const change of changes) {
    const rel = change.Path.replace(/^\/+/, "");
    if (rel === "") continue;
    if (change.Kind === ChangeKind.Delete) {
      await entries.marker(whiteoutName(rel));
      continue;
    }
    const st = entries.stat(rel);
    // An overlay whiteout (char 0/0) was made by the kernel with host ids already right: moby leaves it alone.
    if (st !== null) await entries.write(rel, st, isOverlayWhiteout(st));
  }
}

