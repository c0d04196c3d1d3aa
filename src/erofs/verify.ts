/**
 * Whether an image file is one the kernel will mount, read from the file alone: its superblock
 * (magic, block size, checksum), its length against the blocks the superblock counts, and its root
 * inode being a directory. What a store check asks before (or instead of) a test mount.
 */
import * as fs from "node:fs/promises";
import { BLOCK_SIZE, COMPACT_INODE_SIZE, INODE_SLOT, S_IF, decodeSuperBlock } from "./format.ts";

/** What is wrong with an image: cut short, or not a sound EROFS image. */
export interface ImageFault {
  kind: "truncated" | "corrupt";
  message: string;
}

/**
 * Check the image at `file`; null when it looks sound.
 * @example
 * await verifyImage("/h/abc/layer.erofs"); // { kind: "truncated", message: "it is 8192 bytes, its superblock counts 20480" }
 */
export async function verifyImage(file: string): Promise<ImageFault | null> {
  const handle = await fs.open(file, "r");
  try {
    const size = (await handle.stat()).size;
    if (size < BLOCK_SIZE) return { kind: "truncated", message: `it is ${size} bytes, shorter than its first block` };
    const block0 = new Uint8Array(BLOCK_SIZE);
    await handle.read(block0, 0, BLOCK_SIZE, 0);
    const sb = decodeSuperBlock(block0);
    if (typeof sb === "string") return { kind: "corrupt", message: sb };
    if (size < sb.blocks * BLOCK_SIZE) {
      return { kind: "truncated", message: `it is ${size} bytes, its superblock counts ${sb.blocks * BLOCK_SIZE}` };
    }
    const at = sb.metaBlkaddr * BLOCK_SIZE + sb.rootNid * INODE_SLOT;
    if (at + COMPACT_INODE_SIZE > size) return { kind: "corrupt", message: `its root inode (nid ${sb.rootNid}) lies beyond its end` };
    // i_format (2 bytes), i_xattr_icount (2), i_mode (2): the same in compact and extended inodes.
    const head = new Uint8Array(6);
    await handle.read(head, 0, head.byteLength, at);
    const mode = new DataView(head.buffer).getUint16(4, true);
    if ((mode & S_IF.MT) !== S_IF.DIR) return { kind: "corrupt", message: `its root inode (nid ${sb.rootNid}) is no directory (mode 0o${mode.toString(8)})` };
    return null;
  } finally {
    await handle.close();
  }
}
