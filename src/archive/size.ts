/** moby's `ChangesSize`: how many bytes a change list adds to a layer. */
import { lstatSync, readdirSync } from "node:fs";
import * as fs from "node:fs/promises";
import { setImmediate } from "node:timers";
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
  // Synchronous lstat/readdir (a few µs each, 15-30 times less than through the thread pool),
  // handing the event loop back every YIELD_EVERY entries so other calls go on during a big walk.
  const seen = new Set<bigint>();
  let size = 0;
  let done = 0;
  const stack = [dir];
  for (let p = stack.pop(); p !== undefined; p = stack.pop()) {
    const st = lstatSync(p, { bigint: true });
    if (!seen.has(st.ino)) {
      seen.add(st.ino);
      size += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) for (const name of readdirSync(p)) stack.push(`${p}/${name}`);
    if (++done % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  return { size, inodes: seen.size };
}

/** Entries a walk handles between two turns of the event loop (~1-2 ms of syscalls). */
const YIELD_EVERY = 512;
