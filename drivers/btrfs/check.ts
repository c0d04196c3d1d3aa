/**
 * The btrfs store check (`strata check`): that Home is on btrfs at all (if not, nothing else is
 * looked at: a store copied off its filesystem, or a filesystem not mounted, is the one problem),
 * the `subvolumes/`, `tmp/` and `meta/` directories, every `subvolumes/<id>` being a subvolume,
 * the layers against their `meta/<id>` records (records without a layer, layers without one,
 * corrupt records, missing parents), what a crash left in `tmp/`, and mounts under Home (btrfs
 * mounts nothing there).
 *
 * Repairs are the driver's own start-up's: temp entries go as its recovery removes them
 * (`removeTempEntry`: subvolumes, read-only ones too, destroyed with those nested in them), records
 * of missing layers are dropped, a missing store directory is made. A subvolume is never destroyed
 * and a layer's directory never removed.
 *
 * Frozen state: an image layer (its record says it is no container's) that has children but is not
 * read-only is a note, not a problem. Its children are snapshots, so a writable parent changes
 * nothing they see; the driver itself leaves one so when a crash cuts an ApplyDiff or a Remove
 * short; and the next child built on it freezes it again. Start-up does not freeze it, so neither
 * does the repair.
 */
import * as path from "node:path";
import { checkRecords } from "../../src/check/records.ts";
import { entryKind, entryNames, foreignMount, scanTempDir, storeDirFindings } from "../../src/check/scan.ts";
import { type CheckContext, type Finding, finding } from "../../src/check/types.ts";
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import { mountsUnder } from "../../src/mount/mountinfo.ts";
import { META_DIR } from "../../src/store/layer-records.ts";
import { backingFs } from "../../src/sys/fs-magic.ts";
import type { Sys } from "../../src/sys/types.ts";
import { STAGING, SUBVOLUMES_DIR, TMP_DIR } from "./driver.ts";
import { LAYER_RECORD } from "./records.ts";
import { removeTempEntry } from "./subvolume.ts";

/** What statfs calls btrfs. */
const BTRFS_FS = "btrfs";

/** The subvolume id of the directory `p`, or null when btrfs cannot say (not on btrfs, the empty stand-in of a nested subvolume). */
function _subvolId(sys: Sys, p: string): bigint | null {
  try {
    return sys.btrfsSubvolId(p);
  } catch {
    return null;
  }
}

/** The layers of a btrfs Home: the directories in `subvolumes/` named like layer IDs. */
export async function btrfsLayerIds(home: string): Promise<Array<{ id: string; path: string }>> {
  const dir = path.join(home, SUBVOLUMES_DIR);
  return (await entryNames(dir)).filter((n) => LAYER_ID_PATTERN.test(n) && entryKind(path.join(dir, n)) === "dir").map((id) => ({ id, path: path.join(dir, id) }));
}

/**
 * Check a btrfs Home; nothing is written (repairs are returned, not run).
 * @example
 * const findings = await checkBtrfsStore({ home, realHome: home, sys, mounts: await readMountInfo() });
 */
export async function checkBtrfsStore(ctx: CheckContext): Promise<Finding[]> {
  const { home, sys } = ctx;
  const fsName = backingFs(sys, home);
  if (fsName !== BTRFS_FS) {
    return [finding("problem", "not-btrfs", home, `Home is on ${fsName}, not btrfs: the btrfs driver refuses it (its btrfs filesystem is not mounted here, or the store was copied off one); nothing else was checked`)];
  }
  const subvolumes = path.join(home, SUBVOLUMES_DIR);
  const tmp = path.join(home, TMP_DIR);
  const out = storeDirFindings([subvolumes, tmp, path.join(home, META_DIR)]);

  // The driver takes every directory here for a layer; one that is no subvolume cannot be snapshotted.
  const ids = new Set<string>();
  const subvols = new Set<string>();
  const around = _subvolId(sys, subvolumes);
  for (const name of await entryNames(subvolumes)) {
    const p = path.join(subvolumes, name);
    const kind = entryKind(p);
    if (kind !== "dir" || !LAYER_ID_PATTERN.test(name)) {
      out.push(finding("problem", "foreign-entry", p, `a ${kind} in subvolumes/ that is no layer: left alone`));
      continue;
    }
    ids.add(name);
    const id = _subvolId(sys, p);
    if (id !== null && id !== around) subvols.add(name);
    else out.push(finding("problem", "not-a-subvolume", p, "a plain directory where a layer's subvolume belongs: no layer can be built on it (a snapshot needs a subvolume); left alone, it may hold the layer's files"));
  }

  out.push(...(await scanTempDir(ctx, {
    dir: tmp,
    where: "tmp/",
    prefixes: Object.values(STAGING),
    remove: (s, dir, name) => removeTempEntry(s, path.join(dir, name)),
  })));

  const { findings, records } = await checkRecords({
    dir: path.join(home, META_DIR),
    shape: LAYER_RECORD,
    layers: ids,
    layerPath: (id) => path.join(subvolumes, id),
    withoutRecord: {
      severity: "problem",
      message: "the layer has no record (written before every layer is placed, so it was lost): its parent, whether it is a container's, and its size limit are unknown; left alone",
    },
    missingParent: "its files are whole: a snapshot keeps what it took from its parent",
  });
  out.push(...findings);

  const parents = new Set([...records.values()].map((r) => r.parent));
  for (const [id, r] of records) {
    if (r.readWrite || !parents.has(id) || !subvols.has(id)) continue;
    const p = path.join(subvolumes, id);
    if (!sys.btrfsIsReadonly(p)) {
      out.push(finding("note", "not-frozen", p, "an image layer others are built on is writable (a crash inside ApplyDiff or Remove): its children are snapshots and see no change; the next child built on it freezes it"));
    }
  }

  for (const m of mountsUnder(ctx.mounts, ctx.realHome)) out.push(foreignMount(m, "under Home (btrfs mounts nothing there)"));
  return out;
}
