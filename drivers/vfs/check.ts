/**
 * The vfs store check (`strata check`): `dir/<id>` layers against their `meta/<id>` records,
 * parents that are missing, what a crash left in `tmp/`, and mounts under Home (vfs makes none).
 * Repairs are the ones the driver's own start-up makes: delete temp entries (every name there is
 * one of the staging names below), drop records of missing layers, swap in an ApplyDiff that had
 * finished. A layer directory is never deleted.
 */
import { lstatSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { type CheckContext, type Finding, finding } from "../../src/check/types.ts";
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import { mountsUnder } from "../../src/mount/mountinfo.ts";
import { removeBeneath } from "../../src/store/remove-tree.ts";
import { DONE_PREFIX, LAYERS_DIR, READY_PREFIX, TMP_DIR } from "./driver.ts";
import { META_DIR } from "../../src/store/layer-records.ts";

/** Every prefix the driver's staging gives entries of `tmp/` (`<kind>-<id>-<pid>-<n>`). */
const TEMP_PREFIXES = ["new-", "meta-", "apply-", "rm-", DONE_PREFIX, READY_PREFIX];

function _kind(p: string): "dir" | "file" | "symlink" | "other" | "missing" {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (st === undefined) return "missing";
  return st.isDirectory() ? "dir" : st.isFile() ? "file" : st.isSymbolicLink() ? "symlink" : "other";
}

const _names = (dir: string) => fs.readdir(dir).catch(() => [] as string[]);

/** The layers of a vfs Home: the real directories in `dir/` named like layer IDs. */
export async function vfsLayerIds(home: string): Promise<Array<{ id: string; path: string }>> {
  const layers = path.join(home, LAYERS_DIR);
  return (await _names(layers)).filter((n) => LAYER_ID_PATTERN.test(n) && _kind(path.join(layers, n)) === "dir").map((id) => ({ id, path: path.join(layers, id) }));
}

/**
 * Check a vfs Home; nothing is written (repairs are returned, not run).
 * @example
 * const findings = await checkVfsStore({ home, realHome: home, sys, mounts: await readMountInfo() });
 */
export async function checkVfsStore(ctx: CheckContext): Promise<Finding[]> {
  const out: Finding[] = [];
  const layers = path.join(ctx.home, LAYERS_DIR);
  const tmp = path.join(ctx.home, TMP_DIR);
  const meta = path.join(ctx.home, META_DIR);
  for (const dir of [layers, tmp, meta]) {
    const kind = _kind(dir);
    if (kind === "missing") {
      out.push(finding("problem", "missing-store-dir", dir, `the store's ${path.basename(dir)}/ directory is missing`, async () => {
        await fs.mkdir(dir, { mode: 0o700 });
        return "made it (empty, mode 0700)";
      }));
    } else if (kind !== "dir") {
      out.push(finding("problem", "foreign-entry", dir, `it is a ${kind} where the store keeps its ${path.basename(dir)}/ directory`));
    }
  }

  const ids = new Set<string>();
  for (const name of await _names(layers)) {
    const p = path.join(layers, name);
    const kind = _kind(p);
    if (kind === "dir" && LAYER_ID_PATTERN.test(name)) ids.add(name);
    else out.push(finding("problem", "foreign-entry", p, `a ${kind} in dir/ that is no layer: left alone`));
  }

  // Layers an unfinished ApplyDiff holds come back with the repair: their records are no orphans.
  const restored = new Set<string>();
  for (const name of await _names(tmp)) {
    const p = path.join(tmp, name);
    if (!TEMP_PREFIXES.some((pre) => name.startsWith(pre))) {
      out.push(finding("problem", "foreign-entry", p, "an entry of tmp/ strata did not name: left alone"));
      continue;
    }
    const done = name.startsWith(DONE_PREFIX) && _kind(p) === "dir" ? await _names(p) : [];
    const finished = done.find((id) => LAYER_ID_PATTERN.test(id) && _kind(path.join(p, id)) === "dir" && !ids.has(id) && _kind(path.join(layers, id)) === "missing");
    if (finished !== undefined) {
      out.push(finding("problem", "unfinished-apply", path.join(p, finished), `an ApplyDiff of layer "${finished}" finished but was not swapped in: the layer is missing`, async () => {
        await fs.rename(path.join(p, finished), path.join(layers, finished));
        await removeBeneath(ctx.sys, tmp, name);
        return `moved it into place as dir/${finished}`;
      }));
      restored.add(finished);
      continue;
    }
    out.push(finding("problem", "temp-entry", p, "a half-made or half-removed entry a crash left in tmp/", async () => {
      await removeBeneath(ctx.sys, tmp, name);
      return "removed it";
    }));
  }

  const parents = new Map<string, string>();
  for (const name of await _names(meta)) {
    const p = path.join(meta, name);
    if (!LAYER_ID_PATTERN.test(name) || _kind(p) !== "file") {
      out.push(finding("problem", "foreign-entry", p, "an entry of meta/ that is no layer record: left alone"));
      continue;
    }
    if (!ids.has(name) && !restored.has(name)) {
      out.push(finding("problem", "record-without-layer", p, `the record of layer "${name}", which does not exist`, async () => {
        await fs.rm(p, { force: true });
        return "removed the record (it named only the missing layer's parent)";
      }));
      continue;
    }
    try {
      const record = JSON.parse(await fs.readFile(p, "utf8"));
      if (typeof record?.parent !== "string") throw new Error("no parent field");
      parents.set(name, record.parent);
    } catch (err) {
      out.push(finding("problem", "corrupt-record", p, `layer "${name}"'s record cannot be read (${(err as Error).message}): its parent is unknown`));
    }
  }
  for (const id of ids) {
    const parent = parents.get(id);
    if (parent === undefined && _kind(path.join(meta, id)) === "missing") {
      out.push(finding("note", "layer-without-record", path.join(layers, id), "the layer has no parent record (made by a version before records): nothing stops its parent's removal"));
    } else if (parent !== undefined && parent !== "" && !ids.has(parent) && !restored.has(parent)) {
      out.push(finding("problem", "missing-parent", path.join(layers, id), `its parent "${parent}" does not exist (its files are whole: vfs copies its parent's)`));
    }
  }

  for (const m of mountsUnder(ctx.mounts, ctx.realHome)) {
    out.push(finding("problem", "foreign-mount", m.mountPoint, `a ${m.fsType} mount of "${m.source}" under Home (vfs mounts nothing): left alone`));
  }
  return out;
}
