/**
 * Directory contents: every entry ("." and ".." included) sorted by the bytes of its name, as the
 * kernel's binary search in `erofs_namei` needs, packed into blocks that each start with their
 * dirent array and end with the names. A block's last name runs to the block's end (or the
 * directory's), so the unused rest of a full block must be zeros.
 */
import { BLOCK_SIZE, DIRENT_SIZE, encodeDirent } from "./format.ts";

/** One directory entry before nids are known. */
export interface DirEntry {
  name: Uint8Array;
  fileType: number;
  /** Index of the target in the writer's inode list. */
  target: number;
}

/** A directory's entries split into blocks. */
export interface DirLayout {
  entries: DirEntry[];
  /** Index in `entries` where each block starts. */
  starts: number[];
  /** Bytes used in the last block. */
  lastSize: number;
}

/** Compare names as unsigned bytes. */
export function compareNames(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.byteLength, b.byteLength);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.byteLength - b.byteLength;
}

/** Sort `entries` and split them into blocks. */
export function layoutDir(entries: DirEntry[]): DirLayout {
  entries.sort((x, y) => compareNames(x.name, y.name));
  const starts: number[] = [0];
  let used = 0;
  for (let i = 0; i < entries.length; i++) {
    const need = DIRENT_SIZE + entries[i].name.byteLength;
    if (used + need > BLOCK_SIZE) {
      starts.push(i);
      used = 0;
    }
    used += need;
  }
  return { entries, starts, lastSize: used };
}

/** The directory's `i_size`. */
export function dirSize(d: DirLayout): number {
  return (d.starts.length - 1) * BLOCK_SIZE + d.lastSize;
}

/** The bytes of block `b` (full blocks are BLOCK_SIZE long, the last one `lastSize`). */
export function encodeDirBlock(d: DirLayout, b: number, nidOf: (target: number) => number): Uint8Array {
  const from = d.starts[b];
  const to = b + 1 < d.starts.length ? d.starts[b + 1] : d.entries.length;
  const out = new Uint8Array(b + 1 < d.starts.length ? BLOCK_SIZE : d.lastSize);
  const view = new DataView(out.buffer);
  let nameAt = (to - from) * DIRENT_SIZE;
  for (let i = from; i < to; i++) {
    const e = d.entries[i];
    encodeDirent(view, (i - from) * DIRENT_SIZE, nidOf(e.target), nameAt, e.fileType);
    out.set(e.name, nameAt);
    nameAt += e.name.byteLength;
  }
  return out;
}
