/**
 * The end of an image: with every file's data already written, lay out what is left — directory
 * blocks, inodes with their inline xattrs and tails — after the data, and write the superblock.
 *
 * Inodes are packed into 32-byte slots, in breadth-first order (a directory's children near it),
 * first-fit over the last few partly filled blocks. An inode with inline data never crosses a block
 * boundary (the kernel refuses tail data that does). The root comes first, at nid 1: the
 * superblock's root_nid is 16 bits, and nid 0 would be inode number 0, which tools take for "no file".
 */
import type { Timespec } from "../sys/types.ts";
import { StrataError } from "../core/errors.ts";
import {
  BLOCK_SIZE,
  COMPACT_INODE_SIZE,
  type DataLayout,
  encodeDev,
  encodeInode,
  encodeSuperBlock,
  EXTENDED_INODE_SIZE,
  fitsCompact,
  FT,
  INODE_SLOT,
  LAYOUT,
  S_IF,
} from "./format.ts";
import { type DirEntry, type DirLayout, dirSize, encodeDirBlock, layoutDir } from "./_dirents.ts";
import type { ImageNode, NodeType } from "./image-tree.ts";
import type { ImageSink } from "./_sink.ts";
import type { TailSpool } from "./_tail-spool.ts";
import { encodeXattrs } from "./_xattrs.ts";

/** What an image holds, once written. */
export interface ImageStats {
  /** Size of the image file in bytes. */
  bytes: number;
  blocks: number;
  inodes: number;
  /** The time compact inodes carry. */
  buildTime: Timespec;
}

/** Partly filled metadata blocks first-fit looks into. */
const OPEN_BLOCKS = 8;
/** `sizeof(struct erofs_xattr_ibody_header)`. */
const XATTR_HEADER = 12;
/** Metadata is written in chunks of this size. */
const META_CHUNK = 1 << 20;

const _TYPE: Record<NodeType, { ifmt: number; ft: number }> = {
  file: { ifmt: S_IF.REG, ft: FT.REG },
  dir: { ifmt: S_IF.DIR, ft: FT.DIR },
  symlink: { ifmt: S_IF.LNK, ft: FT.LNK },
  char: { ifmt: S_IF.CHR, ft: FT.CHR },
  block: { ifmt: S_IF.BLK, ft: FT.BLK },
  fifo: { ifmt: S_IF.FIFO, ft: FT.FIFO },
  socket: { ifmt: S_IF.SOCK, ft: FT.SOCK },
};

const _utf8 = new TextEncoder();

/** One inode as it will be written. */
interface _Plan {
  node: ImageNode;
  parent: number;
  dir?: DirLayout;
  nlink: number;
  size: number;
  extended: boolean;
  layout: DataLayout;
  iu: number;
  xattrs: { body: Uint8Array; count: number };
  /** Bytes after the inode and xattrs: a file or directory tail, or a symlink target. */
  inlineSize: number;
  /** Blocks this inode needs after the file data (directory blocks, a long symlink). */
  late: number;
  /** Byte offset in the metadata area. */
  offset: number;
}

/**
 * Write directories, inodes and the superblock for `root`; the sink is positioned after the
 * file data (block-aligned). Returns the image's stats; the sink is flushed, not synced.
 */
export async function finishImage(root: ImageNode, sink: ImageSink, spool: TailSpool): Promise<ImageStats> {
  const plans = _collect(root);
  const build = _buildTime(plans);
  for (const p of plans) _plan(p, build);

  // Directory blocks and long symlinks go right after the file data, in plan order.
  let lateBlk = sink.block;
  for (const p of plans) {
    if (p.late === 0) continue;
    p.iu = lateBlk;
    lateBlk += p.late;
  }
  const metaBlk = lateBlk;
  let metaBlocks = _place(plans);
  // fsck.erofs 1.5 reads an xattr header's 12 bytes after every inode, with xattrs or not: an
  // image ending right after an inode would fail its check, so give that case a block more.
  let end = 0;
  for (const p of plans) end = Math.max(end, p.offset + _itemSize(p));
  if (end + XATTR_HEADER > metaBlocks * BLOCK_SIZE) metaBlocks++;
  const nidOf = (i: number) => plans[i].offset / INODE_SLOT;
  if (nidOf(0) > 0xffff) throw new StrataError("The root inode of an image lies beyond nid 65535");
  if (metaBlk + metaBlocks > 0xffffffff) throw new StrataError("An image cannot hold more than 2^32 blocks");

  for (const p of plans) {
    if (p.late === 0) continue;
    if (p.dir) {
      const blocks = p.dir.starts.length;
      for (let b = 0; b < p.late; b++) await sink.write(encodeDirBlock(p.dir, b, nidOf));
      if (p.late === blocks) await sink.padToBlock();
    } else {
      await sink.write(p.node.target!);
      await sink.padToBlock();
    }
  }
  if (sink.block !== metaBlk) throw new Error(`Image metadata expected at block ${metaBlk}, at ${sink.block}`);

  await _writeMeta(plans, sink, spool, build, nidOf, metaBlocks);
  const blocks = metaBlk + metaBlocks;
  await sink.flush();
  await sink.writeAt(encodeSuperBlock({ rootNid: nidOf(0), inodes: plans.length, buildSec: build.sec, buildNsec: build.nsec, blocks, metaBlkaddr: metaBlk }), 0);
  return { bytes: blocks * BLOCK_SIZE, blocks, inodes: plans.length, buildTime: build };
}

/** Every inode once (hardlinks share one), breadth-first from the root. */
function _collect(root: ImageNode): _Plan[] {
  const plans: _Plan[] = [];
  const index = new Map<ImageNode, number>();
  const add = (node: ImageNode, parent: number): number => {
    let i = index.get(node);
    if (i === undefined) {
      i = plans.length;
      index.set(node, i);
      plans.push({ node, parent, nlink: 0, size: 0, extended: true, layout: LAYOUT.FLAT_PLAIN, iu: 0, xattrs: { body: new Uint8Array(0), count: 0 }, inlineSize: 0, late: 0, offset: 0 });
    }
    return i;
  };
  add(root, 0);
  for (let d = 0; d < plans.length; d++) {
    const p = plans[d];
    if (p.node.type !== "dir") continue;
    const entries: DirEntry[] = [
      { name: _utf8.encode("."), fileType: FT.DIR, target: d },
      { name: _utf8.encode(".."), fileType: FT.DIR, target: p.parent },
    ];
    let subdirs = 0;
    for (const [name, child] of p.node.children!) {
      const target = add(child, d);
      entries.push({ name: _utf8.encode(name), fileType: _TYPE[child.type].ft, target });
      if (child.type === "dir") subdirs++;
    }
    p.dir = layoutDir(entries);
    p.nlink = 2 + subdirs;
  }
  return plans;
}

/** The most common mtime: compact inodes carry none of their own, only the image's build time. */
function _buildTime(plans: _Plan[]): Timespec {
  const counts = new Map<string, number>();
  let best: Timespec = { sec: 0, nsec: 0 };
  let bestCount = 0;
  for (const { node } of plans) {
    if (!node.mtime) continue;
    const key = `${node.mtime.sec}.${node.mtime.nsec}`;
    const n = (counts.get(key) ?? 0) + 1;
    counts.set(key, n);
    if (n > bestCount) {
      bestCount = n;
      best = node.mtime;
    }
  }
  return best;
}

function _plan(p: _Plan, build: Timespec): void {
  const n = p.node;
  const xattrs = encodeXattrs(n.xattrs);
  if (typeof xattrs === "string") throw new StrataError(`Cannot write an image: ${xattrs}`);
  p.xattrs = xattrs;
  if (n.type !== "dir") p.nlink = n.names;
  const mtime = n.mtime ?? build;
  p.size = n.type === "dir" ? dirSize(p.dir!) : n.type === "symlink" ? n.target!.byteLength : n.type === "file" ? n.size : 0;
  p.extended = !fitsCompact({ mode: 0, nlink: p.nlink, size: p.size, uid: n.uid, gid: n.gid, mtimeSec: mtime.sec, mtimeNsec: mtime.nsec }, build.sec, build.nsec);
  const head = (p.extended ? EXTENDED_INODE_SIZE : COMPACT_INODE_SIZE) + xattrs.body.byteLength;
  switch (n.type) {
    case "file":
      p.iu = n.blkaddr;
      if (typeof n.tail === "object" && n.tail !== null) {
        p.layout = LAYOUT.FLAT_INLINE;
        p.inlineSize = n.size % BLOCK_SIZE;
      }
      return;
    case "dir": {
      const tail = p.dir!.lastSize;
      const blocks = p.dir!.starts.length;
      if (tail < BLOCK_SIZE && head + tail <= BLOCK_SIZE) {
        p.layout = LAYOUT.FLAT_INLINE;
        p.inlineSize = tail;
        p.late = blocks - 1;
      } else p.late = blocks;
      return;
    }
    case "symlink":
      if (head + p.size <= BLOCK_SIZE && p.size < BLOCK_SIZE) {
        p.layout = LAYOUT.FLAT_INLINE;
        p.inlineSize = p.size;
      } else p.late = 1;
      return;
    case "char":
    case "block":
      p.iu = encodeDev(n.rdevMajor, n.rdevMinor);
      return;
  }
}

/** Give every plan its offset in the metadata area; returns the area's size in blocks. */
function _place(plans: _Plan[]): number {
  // Slot 0 stays empty so that the root is nid 1.
  const open: Array<{ blk: number; used: number }> = [{ blk: 0, used: INODE_SLOT }];
  let next = 1;
  for (const p of plans) {
    const size = _itemSize(p);
    if (size > BLOCK_SIZE) {
      // Only inodes without inline data get here (huge xattrs): they may span blocks.
      p.offset = next * BLOCK_SIZE;
      next += Math.ceil(size / BLOCK_SIZE);
      if (size % BLOCK_SIZE) open.push({ blk: next - 1, used: _align(size % BLOCK_SIZE) });
    } else {
      let slot = open.find((b) => _align(b.used) + size <= BLOCK_SIZE);
      if (!slot) {
        slot = { blk: next++, used: 0 };
        open.push(slot);
      }
      const at = _align(slot.used);
      p.offset = slot.blk * BLOCK_SIZE + at;
      slot.used = at + size;
    }
    while (open.length > OPEN_BLOCKS) open.shift();
  }
  return next;
}

function _itemSize(p: _Plan): number {
  return (p.extended ? EXTENDED_INODE_SIZE : COMPACT_INODE_SIZE) + p.xattrs.body.byteLength + p.inlineSize;
}

function _align(n: number): number {
  return (n + INODE_SLOT - 1) & ~(INODE_SLOT - 1);
}

/** Encode every inode in offset order and stream the metadata area out. */
async function _writeMeta(plans: _Plan[], sink: ImageSink, spool: TailSpool, build: Timespec, nidOf: (i: number) => number, blocks: number): Promise<void> {
  const order = plans.map((_, i) => i).sort((a, b) => plans[a].offset - plans[b].offset);
  const total = blocks * BLOCK_SIZE;
  let chunk = new Uint8Array(Math.min(META_CHUNK, total));
  let chunkAt = 0;
  const emit = async (bytes: Uint8Array, offset: number) => {
    for (let done = 0; done < bytes.byteLength; ) {
      while (offset + done >= chunkAt + chunk.byteLength) {
        await sink.write(chunk);
        chunkAt += chunk.byteLength;
        chunk = new Uint8Array(Math.min(META_CHUNK, total - chunkAt));
      }
      const at = offset + done - chunkAt;
      const n = Math.min(bytes.byteLength - done, chunk.byteLength - at);
      chunk.set(bytes.subarray(done, done + n), at);
      done += n;
    }
  };
  for (const i of order) {
    const p = plans[i];
    const n = p.node;
    const mtime = n.mtime ?? build;
    const isize = p.extended ? EXTENDED_INODE_SIZE : COMPACT_INODE_SIZE;
    const item = new Uint8Array(_itemSize(p));
    encodeInode(item, 0, {
      mode: _TYPE[n.type].ifmt | n.mode,
      nlink: p.nlink,
      size: p.size,
      uid: n.uid,
      gid: n.gid,
      mtimeSec: mtime.sec,
      mtimeNsec: mtime.nsec,
      layout: p.layout,
      iu: p.iu,
      ino: i + 1,
      xattrCount: p.xattrs.count,
    }, p.extended);
    item.set(p.xattrs.body, isize);
    if (p.inlineSize > 0) item.set(_inline(p, spool, nidOf), isize + p.xattrs.body.byteLength);
    await emit(item, p.offset);
  }
  // The rest of the area (and of the last chunk) is zeros.
  for (;;) {
    await sink.write(chunk);
    chunkAt += chunk.byteLength;
    if (chunkAt >= total) return;
    chunk = new Uint8Array(Math.min(META_CHUNK, total - chunkAt));
  }
}

function _inline(p: _Plan, spool: TailSpool, nidOf: (i: number) => number): Uint8Array {
  const n = p.node;
  if (p.dir) return encodeDirBlock(p.dir, p.dir.starts.length - 1, nidOf);
  if (n.type === "symlink") return n.target!;
  const tail = n.tail as { spool: number };
  return spool.read(tail.spool, p.inlineSize);
}
