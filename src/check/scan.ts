/**
 * What every driver's store check does alike: tell what an entry is without following it, list a
 * directory that may be missing, find store directories that are missing or are not directories,
 * read a temp dir (strata's staging names are temp entries, safe to remove; any other name is
 * reported and left), and report mounts left behind. Each driver's `check.ts` adds what is its own.
 */
import { lstatSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { unmount } from "../mount/mounter.ts";
import { type MountInfo, mountsUnder } from "../mount/mountinfo.ts";
import { removeBeneath } from "../store/remove-tree.ts";
import type { Sys } from "../sys/types.ts";
import { type CheckContext, type Finding, finding } from "./types.ts";

/** What is at a path, as lstat sees it. */
export type EntryKind = "dir" | "file" | "symlink" | "other" | "missing";

/** What `p` is, never following a symlink. */
export function entryKind(p: string): EntryKind {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (st === undefined) return "missing";
  return st.isDirectory() ? "dir" : st.isFile() ? "file" : st.isSymbolicLink() ? "symlink" : "other";
}

/** The names in `dir`, none when it is missing or no directory (reported elsewhere). */
export function entryNames(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch(() => [] as string[]);
}

/**
 * The store directories `dirs` (absolute) that are missing (made again, empty, by the repair, as
 * Init would) or are something else (left alone).
 * @example
 * storeDirFindings([path.join(home, "tmp"), path.join(home, "meta")]);
 */
export function storeDirFindings(dirs: readonly string[]): Finding[] {
  const out: Finding[] = [];
  for (const dir of dirs) {
    const kind = entryKind(dir);
    if (kind === "missing") {
      out.push(finding("problem", "missing-store-dir", dir, `the store's ${path.basename(dir)}/ directory is missing`, async () => {
        await fs.mkdir(dir, { mode: 0o700 });
        return "made it (empty, mode 0700)";
      }));
    } else if (kind !== "dir") {
      out.push(finding("problem", "foreign-entry", dir, `it is a ${kind} where the store keeps its ${path.basename(dir)}/ directory`));
    }
  }
  return out;
}

/** Whether the entry `name` of a temp dir carries one of strata's staging prefixes. */
export function isStagingName(name: string, prefixes: readonly string[]): boolean {
  return prefixes.some((pre) => name.startsWith(pre));
}

/** How a driver's temp dir is read. */
export interface TempScan {
  /** The temp dir (absolute, under Home). */
  dir: string;
  /** How messages name it ("tmp/", "the layer's own temp dir"). */
  where: string;
  /** The prefixes of the driver's staging names; an entry with none is foreign, left alone. Absent: every entry is a temp entry. */
  prefixes?: readonly string[];
  /**
   * Unmount what is mounted in an entry before it goes: for drivers that mount inside their temp
   * entries (and whose start-up unmounts them). Without it a mount there stays a foreign mount.
   */
  unmountInside?: boolean;
  /** How an entry goes (default: `removeBeneath`, which refuses a mount inside); btrfs destroys subvolumes. */
  remove?: (sys: Sys, dir: string, name: string) => Promise<void>;
  /** A driver's own reading of an entry, before the generic one (vfs: an ApplyDiff that finished). */
  special?: (name: string, p: string) => Promise<Finding | null>;
}

/**
 * The temp entries a crash left in `scan.dir`, each with its removal as the repair; entries strata
 * did not name are foreign and left alone.
 * @example
 * await scanTempDir(ctx, { dir: path.join(ctx.home, "tmp"), where: "tmp/", prefixes: ["new-", "rm-"] });
 */
export async function scanTempDir(ctx: CheckContext, scan: TempScan): Promise<Finding[]> {
  const out: Finding[] = [];
  const remove = scan.remove ?? ((sys: Sys, dir: string, name: string) => removeBeneath(sys, dir, name));
  const realDir = path.join(ctx.realHome, path.relative(ctx.home, scan.dir));
  const mountPoints = new Set(ctx.mounts.map((m) => m.mountPoint));
  for (const name of await entryNames(scan.dir)) {
    const p = path.join(scan.dir, name);
    if (scan.prefixes !== undefined && !isStagingName(name, scan.prefixes)) {
      out.push(finding("problem", "foreign-entry", p, `an entry of ${scan.where} strata did not name: left alone`));
      continue;
    }
    const special = await scan.special?.(name, p);
    if (special) {
      out.push(special);
      continue;
    }
    const real = path.join(realDir, name);
    const inside = scan.unmountInside ? mountsUnder(ctx.mounts, real).map((m) => m.mountPoint) : [];
    if (scan.unmountInside && mountPoints.has(real)) inside.push(real);
    out.push(finding("problem", "temp-entry", p, `a half-made or half-removed entry a crash left in ${scan.where}${inside.length ? " (mounted)" : ""}`, async () => {
      for (const m of inside) unmount(ctx.sys, m);
      await remove(ctx.sys, scan.dir, name);
      return inside.length ? `unmounted ${inside.length} mount${inside.length === 1 ? "" : "s"} and removed it` : "removed it";
    }));
  }
  return out;
}

/** Whether the mount at `rel` (its path below Home, split) is inside a temp entry `scanTempDir` reports with its mounts. */
export function insideTempEntry(rel: readonly string[], tmpDir: string, prefixes: readonly string[]): boolean {
  return rel[0] === tmpDir && rel[1] !== undefined && isStagingName(rel[1], prefixes);
}

/** A mount strata would unmount at its next start: the repair unmounts it (detaching it when busy), then `after` runs. */
export function staleMount(sys: Sys, m: MountInfo, message: string, after?: () => Promise<void>): Finding {
  return finding("problem", "stale-mount", m.mountPoint, message, async () => {
    const how = unmount(sys, m.mountPoint);
    await after?.();
    return how === "detached" ? "detached it (it was busy)" : "unmounted it";
  });
}

/** A mount no layer owns: reported, left alone (it may be someone's). */
export function foreignMount(m: MountInfo, why: string): Finding {
  return finding("problem", "foreign-mount", m.mountPoint, `a ${m.fsType} mount of "${m.source}" ${why}: left alone`);
}

/**
 * A directory named like a layer that holds no layer (its defining file is missing): an empty one
 * is removed by the repair (nothing is in it), one with content is left alone.
 */
export async function strayLayerDir(p: string, what: string): Promise<Finding> {
  const entries = await entryNames(p);
  if (entries.length === 0) {
    return finding("problem", "empty-layer-dir", p, "an empty directory where no layer is (a removal or create was cut short)", async () => {
      await fs.rmdir(p);
      return "removed the empty directory";
    });
  }
  return finding("problem", "incomplete-layer", p, `a layer directory without its ${what} (holds ${entries.sort().join(", ")}): left alone`);
}
