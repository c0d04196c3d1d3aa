/**
 * A directory tree (a container's upper dir, a snapshotter's active snapshot) into an EROFS
 * image: every inode kind including sockets, hardlinks within the tree, xattrs, nanosecond times
 * and ids exactly as on disk. overlayfs's whiteouts (0/0 character devices) are copied as they
 * are; of overlay's own attributes only the opaque marker is kept, the rest describe the upper
 * dir's past (origins, redirects, impure) and would mislead an overlay stacked on the image.
 */
import * as fs from "node:fs/promises";
import { constants } from "node:fs";
import { hasCode, StrataError } from "../core/errors.ts";
import { readXattrs } from "../archive/_metadata.ts";
import { yieldToLoop } from "../core/yield.ts";
import { isOverlayXattr, OVERLAY_OPAQUE_XATTR } from "../archive/whiteouts.ts";
import type { Stat, Sys } from "../sys/types.ts";
import { S_IF } from "./format.ts";
import type { ImageNode, NodeType } from "./image-tree.ts";
import { ErofsWriter, type ErofsWriterOptions, type ImageStats, newNode } from "./image-writer.ts";

/** Options of `writeImageFromDir`. */
export interface FromDirOptions extends ErofsWriterOptions {
  sys: Sys;
  /** fsync the image before returning. */
  sync?: boolean;
  /** Which attributes to keep; by default all but overlay's own (the opaque marker stays). */
  keepXattr?: (name: string, value: Uint8Array) => boolean;
}

const READ_CHUNK = 256 * 1024;
/** O_NOFOLLOW: a file swapped for a symlink after it was listed is not read through the link. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;
/** Entries handled between yields to the event loop. */
const YIELD_EVERY = 256;

const _TYPES: Record<number, NodeType> = {
  [S_IF.REG]: "file",
  [S_IF.DIR]: "dir",
  [S_IF.LNK]: "symlink",
  [S_IF.CHR]: "char",
  [S_IF.BLK]: "block",
  [S_IF.FIFO]: "fifo",
  [S_IF.SOCK]: "socket",
};

/** The default `keepXattr`: everything but overlay's bookkeeping; `trusted.overlay.opaque=y` is kept. */
export function keepLayerXattr(name: string, value: Uint8Array): boolean {
  if (!isOverlayXattr(name)) return true;
  return name === OVERLAY_OPAQUE_XATTR && value.byteLength === 1 && value[0] === 0x79;
}

/**
 * Write the tree at `dir` as an EROFS image at `path`, which must not exist; the partial image
 * is removed on failure. The tree should not change meanwhile (a paused or stopped container).
 * @example
 * await writeImageFromDir("/var/lib/strata/erofs/upper/abc/diff", "/var/lib/strata/erofs/layers/abc.erofs.tmp", { sys, sync: true });
 */
export async function writeImageFromDir(dir: string, path: string, opts: FromDirOptions): Promise<ImageStats> {
  const sys = opts.sys;
  const keep = opts.keepXattr ?? keepLayerXattr;
  const root = dir.replace(/\/+$/, "") || "/";
  const rootSt = sys.lstat(root);
  if ((rootSt.mode & S_IF.MT) !== S_IF.DIR) throw new StrataError(`Cannot write an image of "${root}": not a directory`);
  const writer = await ErofsWriter.create(path, _node("dir", rootSt, sys, root, keep), opts);
  const links = new Map<bigint, ImageNode>();
  let handled = 0;
  try {
    const stack: Array<[string, ImageNode]> = [[root, writer.tree.root]];
    while (stack.length) {
      const [abs, node] = stack.pop()!;
      const names = sys.lreaddirTypes(abs).map((e) => e.name).sort();
      for (const name of names) {
        if (++handled % YIELD_EVERY === 0) await yieldToLoop();
        const childAbs = `${abs}/${name}`;
        const st = sys.lstat(childAbs);
        const type = _TYPES[st.mode & S_IF.MT];
        if (type === undefined) throw new StrataError(`Cannot write an image of "${childAbs}": unknown file type ${(st.mode & S_IF.MT).toString(8)}`);
        if (type !== "dir" && st.nlink > 1) {
          const first = links.get(st.ino);
          if (first) {
            writer.tree.link(node, name, first, childAbs);
            continue;
          }
        }
        const child = _node(type, st, sys, childAbs, keep);
        if (type === "file") await writer.writeData(child, st.size, _read(childAbs, st.size));
        else if (type === "symlink") {
          child.target = new TextEncoder().encode(await fs.readlink(childAbs));
          child.size = child.target.byteLength;
        } else if (type === "char" || type === "block") {
          child.rdevMajor = st.rdevMajor;
          child.rdevMinor = st.rdevMinor;
        }
        writer.tree.attach(node, name, child, childAbs);
        if (type !== "dir" && st.nlink > 1) links.set(st.ino, child);
        if (type === "dir") stack.push([childAbs, child]);
      }
    }
    return await writer.finish({ sync: opts.sync });
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

function _node(type: NodeType, st: Stat, sys: Sys, abs: string, keep: (name: string, value: Uint8Array) => boolean): ImageNode {
  const xattrs = readXattrs(sys, abs);
  for (const [name, value] of xattrs) if (!keep(name, value)) xattrs.delete(name);
  return newNode(type, { mode: st.mode, uid: st.uid, gid: st.gid, mtime: st.mtime, xattrs });
}

/** Exactly `size` bytes of the file at `abs`; a file that shrank since its stat fails the image. */
async function* _read(abs: string, size: number): AsyncIterable<Uint8Array> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(abs, OPEN_FLAGS);
  } catch (err) {
    if (hasCode(err, "ELOOP")) throw new StrataError(`Cannot write an image of "${abs}": it became a symlink`);
    throw err;
  }
  try {
    const buf = new Uint8Array(Math.min(READ_CHUNK, Math.max(size, 1)));
    for (let left = size; left > 0; ) {
      const { bytesRead } = await handle.read(buf, 0, Math.min(buf.byteLength, left), null);
      if (bytesRead === 0) throw new StrataError(`Cannot write an image of "${abs}": it shrank while being read`);
      left -= bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}
