/** moby's `ChangesSize`: how many bytes a change list adds to a layer. */
import * as fs from "node:fs/promises";
import type { Change } from "./change.ts";
import { ChangeKind } from "./change.ts";
import { hasCode } from "../core/errors.ts";

/**
 * The summed sizes of the added and modified non-directories of `changes` in `dir` (a symlink
 * counts its target's length, a hardlinked inode counts once, a deletion counts nothing).
 * A path gone since the change list was made counts nothing, as in moby.
 * @example
 * const size = await changesSize(layerDir, await changesDirs(layerDir, parentDir, sys));
 */
export async function changesSize(dir: string, changes: Change[]): Promise<number> {
  const seen = new Set<bigint>();
  let size = 0;
  for (const change of changes) {
    if (change.Kind === ChangeKind.Delete) continue;
    let st;
    try {
      st = await fs.lstat(`${dir}/${change.Path}`, { bigint: true });
    } catch (err) {
      if (hasCode(err, "ENOENT", "ENOTDIR")) continue;
      throw err;
    }
    if (st.isDirectory()) continue;
    if (st.nlink > 1n) {
      if (seen.has(st.ino)) continue;
      seen.add(st.ino);
    }
    size += Number(st.size);
  }
  return size;
}

/**
 * The disk use of the tree at `dir`, as containerd's `fs.DiskUsage` counts it: every inode once
 * (hardlinks too), its allocated blocks × 512, symlinks not followed.
 * @example
 * const { size, inodes } = await diskUsage(layerDir);
 */
export async function diskUsage(dir: string): Promise<{ size: number; inodes: number }> {
  const seen = new Set<bigint>();
  let size = 0;
  const visit = async (p: string): Promise<void> => {
    const st = await fs.lstat(p, { bigint: true });
    if (!seen.has(st.ino)) {
      seen.add(st.ino);
      size += Number(st.blocks) * 512;
    }
    if (!st.isDirectory()) return;
    for (const name of await fs.readdir(p)) await visit(`${p}/${name}`);
  };
  await visit(dir);
  return { size, inodes: seen.size };
}
