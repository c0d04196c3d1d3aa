/**
 * The snapshotter's records against its driver's layers, for a Home that is `<root>/<driver>` beside
 * `<root>/<driver>.db`: rows whose layer is gone, layers no row names, parents that are missing, and
 * changes a crash interrupted. The database is opened read-only; nothing here has a repair (the
 * snapshotter's start finishes interrupted changes, containerd's Cleanup removes unnamed layers).
 */
import * as path from "node:path";
import type { OpenDatabase } from "../store/sqlite/types.ts";
import { type Finding, type LayerLister, finding } from "./types.ts";

/** The snapshotter's records file for `home` (`<root>/<driver>` → `<root>/<driver>.db`). */
export function recordsFileOf(home: string, driver: string): string | null {
  return path.basename(home) === driver ? path.join(path.dirname(home), `${driver}.db`) : null;
}

/**
 * Compare the records in `dbFile` with the layers `layerIds` finds in `home`.
 * @example
 * await checkSnapshotRecords(home, "/var/lib/strata/snapshotter/overlay.db", openDatabase, overlayLayerIds);
 */
export async function checkSnapshotRecords(home: string, dbFile: string, openDatabase: OpenDatabase, layerIds: LayerLister): Promise<Finding[]> {
  const out: Finding[] = [];
  const db = openDatabase(dbFile, { readonly: true });
  let rows: Array<{ id: number; key: string; parent: number | null; state: string }>;
  try {
    rows = db.prepare("SELECT id, key, parent, state FROM snapshots ORDER BY id").all()
      .map((r) => ({ id: Number(r.id), key: String(r.key ?? ""), parent: r.parent === null ? null : Number(r.parent), state: String(r.state) }));
  } finally {
    db.close();
  }
  const layers = new Map((await layerIds(home)).map((l) => [l.id, l.path]));
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const r of rows) {
    const layer = String(r.id);
    if (r.state !== "ready") {
      out.push(finding("note", "interrupted-snapshot", dbFile, `snapshot row ${r.id} is "${r.state}" (a crash mid-change): the snapshotter's next start finishes it`));
      continue;
    }
    if (!layers.has(layer)) out.push(finding("problem", "snapshot-without-layer", dbFile, `snapshot "${r.key}" is recorded but its layer ${layer} is missing: containerd will fail to mount it`));
    if (r.parent !== null && byId.get(r.parent)?.state !== "ready") {
      out.push(finding("problem", "missing-parent", dbFile, `snapshot "${r.key}"'s parent (row ${r.parent}) is not recorded`));
    }
  }
  for (const [layer, where] of layers) {
    if (/^\d+$/.test(layer) && byId.has(Number(layer))) continue;
    out.push(finding("problem", "layer-without-snapshot", where, `no snapshot names layer ${layer}: containerd's next Cleanup removes it (left alone here)`));
  }
  return out;
}
