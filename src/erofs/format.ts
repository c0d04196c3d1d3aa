/**
 * EROFS on-disk layout facts (from the kernel's fs/erofs/erofs_fs.h) and the encoders of the few
 * structures strata writes: the superblock, the compact (32-byte) and extended (64-byte) inodes,
 * and directory entries. Everything is little-endian; images use 4 KiB blocks and no compression.
 */
import { crc32c } from "./_crc32c.ts";

/** Block size of every image strata writes: the page size, so any kernel can mount it. */
export const BLOCK_SIZE = 4096;
/** log2(BLOCK_SIZE), the superblock's `blkszbits`. */
export const BLOCK_BITS = 12;
/** The superblock lives 1 KiB into block 0 (room for boot sectors). */
export const SUPER_OFFSET = 1024;
/** `EROFS_SUPER_MAGIC_V1`. */
export const SUPER_MAGIC = 0xe0f5e1e2;
/** `sizeof(struct erofs_super_block)`. */
export const SUPER_SIZE = 128;
/** Inodes are addressed in 32-byte slots: nid = offset from the metadata area / 32. */
export const INODE_SLOT = 32;
/** `sizeof(struct erofs_inode_compact)`. */
export const COMPACT_INODE_SIZE = 32;
/** `sizeof(struct erofs_inode_extended)`. */
export const EXTENDED_INODE_SIZE = 64;
/** `sizeof(struct erofs_dirent)`. */
export const DIRENT_SIZE = 12;
/** `EROFS_NAME_LEN`: the longest name a directory entry holds. */
export const NAME_MAX = 255;
/** The superblock's `root_nid` is 16 bits wide. */
export const ROOT_NID_MAX = 0xffff;

/** `feature_compat` bits. */
export const FEATURE_COMPAT = { SB_CHKSUM: 0x1, MTIME: 0x2 } as const;

/** `i_format` data layouts (bits 1..3). */
export const LAYOUT = { FLAT_PLAIN: 0, FLAT_INLINE: 2 } as const;
/** A flat layout strata writes. */
export type DataLayout = (typeof LAYOUT)[keyof typeof LAYOUT];

/** `S_IF*` file-type bits of `i_mode`: EROFS keeps st_mode's own, so they are the archive's. */
export { S_IF } from "../archive/_file-type.ts";

/** Directory entry `file_type` values (the generic FT_* ones). */
export const FT = { REG: 1, DIR: 2, CHR: 3, BLK: 4, FIFO: 5, SOCK: 6, LNK: 7 } as const;

/** What every inode strata writes needs to say about itself. */
export interface InodeFields {
  /** Full `st_mode`: type and permission bits. */
  mode: number;
  nlink: number;
  size: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
  layout: DataLayout;
  /** `i_u`: the first data block (files, directories, symlinks) or the encoded rdev (devices). */
  iu: number;
  /** The 32-bit inode number for 32-bit stat callers. */
  ino: number;
  /** `i_xattr_icount`: 0 without inline xattrs. */
  xattrCount: number;
}

/** The kernel's `new_encode_dev`: 12-bit major, 20-bit minor in one u32. */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** Whether an inode can be compact: 16-bit ids and nlink, 32-bit size, and the image's build time. */
export function fitsCompact(f: Omit<InodeFields, "layout" | "iu" | "ino" | "xattrCount">, buildSec: number, buildNsec: number): boolean {
  return f.uid <= 0xffff && f.gid <= 0xffff && f.nlink <= 0xffff && f.size <= 0xffffffff &&
    f.mtimeSec === buildSec && f.mtimeNsec === buildNsec;
}

/**
 * Write a compact (`extended` false) or extended inode into `out` at `at`.
 * @example
 * encodeInode(buf, 0, { mode: 0o100644, nlink: 1, size: 0, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, layout: 0, iu: 0, ino: 1, xattrCount: 0 }, false);
 */
export function encodeInode(out: Uint8Array, at: number, f: InodeFields, extended: boolean): void {
  const v = new DataView(out.buffer, out.byteOffset + at, extended ? EXTENDED_INODE_SIZE : COMPACT_INODE_SIZE);
  v.setUint16(0, (extended ? 1 : 0) | (f.layout << 1), true);
  v.setUint16(2, f.xattrCount, true);
  v.setUint16(4, f.mode, true);
  if (!extended) {
    v.setUint16(6, f.nlink, true);
    v.setUint32(8, f.size, true);
    // 12: i_mtime relative to the build time (newer kernels) / reserved (older): 0 either way.
    v.setUint32(16, f.iu, true);
    v.setUint32(20, f.ino, true);
    v.setUint16(24, f.uid, true);
    v.setUint16(26, f.gid, true);
    return;
  }
  v.setBigUint64(8, BigInt(f.size), true);
  v.setUint32(16, f.iu, true);
  v.setUint32(20, f.ino, true);
  v.setUint32(24, f.uid, true);
  v.setUint32(28, f.gid, true);
  // Times before 1970 are stored as two's complement: the kernel reads a signed 64-bit value.
  v.setBigUint64(32, BigInt.asUintN(64, BigInt(f.mtimeSec)), true);
  v.setUint32(40, f.mtimeNsec, true);
  v.setUint32(44, f.nlink, true);
}

/** Superblock fields that vary per image. */
export interface SuperFields {
  rootNid: number;
  inodes: number;
  buildSec: number;
  buildNsec: number;
  blocks: number;
  metaBlkaddr: number;
}

/**
 * Block 0 of an image: zeros, then the superblock at 1 KiB with its crc32c (`sb_csum`).
 * @example
 * const block0 = encodeSuperBlock({ rootNid: 1, inodes: 1, buildSec: 0, buildNsec: 0, blocks: 2, metaBlkaddr: 1 });
 */
export function encodeSuperBlock(f: SuperFields): Uint8Array {
  const block = new Uint8Array(BLOCK_SIZE);
  const v = new DataView(block.buffer, SUPER_OFFSET, SUPER_SIZE);
  v.setUint32(0, SUPER_MAGIC, true);
  v.setUint32(8, FEATURE_COMPAT.SB_CHKSUM | FEATURE_COMPAT.MTIME, true);
  v.setUint8(12, BLOCK_BITS);
  v.setUint16(14, f.rootNid, true);
  v.setBigUint64(16, BigInt(f.inodes), true);
  v.setBigUint64(24, BigInt.asUintN(64, BigInt(f.buildSec)), true);
  v.setUint32(32, f.buildNsec, true);
  v.setUint32(36, f.blocks, true);
  v.setUint32(40, f.metaBlkaddr, true);
  // xattr_blkaddr (44), uuid (48), volume_name (64), feature_incompat (80): all zero.
  // The checksum covers the rest of block 0 from the superblock on, with the field itself zero.
  v.setUint32(4, crc32c(0xffffffff, block.subarray(SUPER_OFFSET)), true);
  return block;
}

/** Write one `struct erofs_dirent` at `at`. */
export function encodeDirent(view: DataView, at: number, nid: number, nameoff: number, fileType: number): void {
  view.setBigUint64(at, BigInt(nid), true);
  view.setUint16(at + 8, nameoff, true);
  view.setUint8(at + 10, fileType);
  view.setUint8(at + 11, 0);
}

/** What a superblock says, as `decodeSuperBlock` reads it back. */
export interface DecodedSuperBlock extends SuperFields {
  blockBits: number;
  featureCompat: number;
}

/**
 * Read back the superblock of block 0 (at least BLOCK_SIZE bytes) and check it as the kernel does
 * at mount: the magic, the block size, and the checksum when the image has one; returns why it is
 * no superblock strata wrote, as a string, when it is not.
 * @example
 * const sb = decodeSuperBlock(encodeSuperBlock({ rootNid: 1, inodes: 1, buildSec: 0, buildNsec: 0, blocks: 2, metaBlkaddr: 1 }));
 * typeof sb === "string" ? sb : sb.rootNid; // 1
 */
export function decodeSuperBlock(block0: Uint8Array): DecodedSuperBlock | string {
  if (block0.byteLength < BLOCK_SIZE) return `block 0 is ${block0.byteLength} bytes, not ${BLOCK_SIZE}`;
  const v = new DataView(block0.buffer, block0.byteOffset + SUPER_OFFSET, SUPER_SIZE);
  const magic = v.getUint32(0, true);
  if (magic !== SUPER_MAGIC) return `no EROFS superblock: its magic is 0x${magic.toString(16).padStart(8, "0")}, not 0x${SUPER_MAGIC.toString(16)}`;
  const featureCompat = v.getUint32(8, true);
  const blockBits = v.getUint8(12);
  if (blockBits !== BLOCK_BITS) return `its block size is 2^${blockBits}, not the ${BLOCK_SIZE} strata writes`;
  if (featureCompat & FEATURE_COMPAT.SB_CHKSUM) {
    // A copy (never a view of the caller's bytes: a Buffer's slice is one) with the checksum field zeroed, as it was computed.
    const copy = new Uint8Array(block0.subarray(SUPER_OFFSET, BLOCK_SIZE));
    const stored = v.getUint32(4, true);
    new DataView(copy.buffer).setUint32(4, 0, true);
    const actual = crc32c(0xffffffff, copy);
    if (actual !== stored) return `its superblock checksum does not match (stored 0x${stored.toString(16)}, computed 0x${actual.toString(16)})`;
  }
  return {
    rootNid: v.getUint16(14, true),
    inodes: Number(v.getBigUint64(16, true)),
    buildSec: Number(BigInt.asIntN(64, v.getBigUint64(24, true))),
    buildNsec: v.getUint32(32, true),
    blocks: v.getUint32(36, true),
    metaBlkaddr: v.getUint32(40, true),
    blockBits,
    featureCompat,
  };
}
