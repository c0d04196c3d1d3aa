/**
 * The vfs store check (`strata check`): `dir/<id>` layers against their `meta/<id>` records,
 * parents that are missing, what a crash left in `tmp/`, and mounts under Home (vfs makes none).
 * Repairs are the ones the driver's own start-up makes: delete temp entries (every name there is
 * one of the staging names below), drop records of missing layers, swap in an ApplyDiff that had
 * finished. A layer directory is never deleted.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { checkRecords } from "../../src/check/records.ts";
import { entryKind, entryNames, foreignMount, scanTempDir, storeDirFindings } from "../../src/check/scan.ts";
import { type CheckContext, type Finding, finding } from "../../src/check/types.ts";
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import { mountsUnder } from "../../src/mount/mountinfo.ts";
import { META_DIR } from "../../src/store/layer-records.ts";
import { removeBeneath } from "../../src/store/remove-tree.ts";
import { DONE_PREFIX, LAYERS_DIR, READY_PREFIX, TMP_DIR } from "./driver.ts";
import { PARENT_RECORD } from "./parents.ts";

/** Every prefix the driver's staging gives entries of `tmp/` (`<kind>-<id>-<pid>-<n>`). */
const TEMP_PREFIXES = ["new-", "meta-", "apply-", "rm-", DONE_PREFIX, READY_PREFIX];

/** The layers of a vfs Home: the real directories in `dir/` named like layer IDs. */
export async function vfsLayerIds(home: string): Promise<Array<{ id: string; path: string }>> {
  const layers = path.join(home, LAYERS_DIR);
  return (await entryNames(layers)).filter((n) => LAYER_ID_PATTERN.test(n) && entryKind(path.join(layers, n)) === "dir").map((id) => ({ id, path: path.join(layers, id) }));
}

/**
 * Check a vfs Home; nothing is written (repairs are returned, not run).
 * @example
 * const findings = await checkVfsStore({ home, realHome: home, sys, mounts: await readMountInfo() });
 */
export async function checkVfsStore(ctx: CheckContext): Promise<Finding[]> {
  const layers = path.join(ctx.home, LAYERS_DIR);
  const tmp = path.join(ctx.home, TMP_DIR);
  const out = storeDirFindings([layers, tmp, path.join(ctx.home, META_DIR)]);

  const ids = new Set<string>();
  for (const name of await entryNames(layers)) {
    const p = path.join(layers, name);
    const kind = entryKind(p);
    if (kind === "dir" && LAYER_ID_PATTERN.test(name)) ids.add(name);
    else out.push(finding("problem", "foreign-entry", p, `a ${kind} in dir/ that is no layer: left alone`));
  }

  // Layers an unfinished ApplyDiff holds come back with the repair: their records are no orphans.
  const restored = new Set<string>();
  const finishedApply = async (name: string, p: string): Promise<Finding | null> => {
    const done = name.startsWith(DONE_PREFIX) && entryKind(p) === "dir" ? await entryNames(p) : [];
    const finished = done.find((id) => LAYER_ID_PATTERN.test(id) && entryKind(path.join(p, id)) === "dir" && !ids.has(id) && entryKind(path.join(layers, id)) === "missing");
    if (finished === undefined) return null;
    restored.add(finished);
    return finding("problem", "unfinished-apply", path.join(p, finished), `an ApplyDiff of layer "${finished}" finished but was not swapped in: the layer is missing`, async () => {
      await fs.rename(path.join(p, finished), path.join(layers, finished));
      await removeBeneath(ctx.sys, tmp, name);
      return `moved it into place as dir/${finished}`;
    });
  };
  out.push(...(await scanTempDir(ctx, { dir: tmp, where: "tmp/", prefixes: TEMP_PREFIXES, special: finishedApply })));

  const { findings } = await checkRecords({
    dir: path.join(ctx.home, META_DIR),
    shape: PARENT_RECORD,
    layers: new Set([...ids, ...restored]),
    layerPath: (id) => path.join(layers, id),
    withoutRecord: { severity: "note", message: "the layer has no parent record (made by a version before records): nothing stops its parent's removal" },
    missingParent: "its files are whole: vfs copies its parent's",
  });
  out.push(...findings);

  for (const m of mountsUnder(ctx.mounts, ctx.realHome)) out.push(foreignMount(m, "under Home (vfs mounts nothing)"));
  return out;
}
