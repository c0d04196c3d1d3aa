/**
 * One EROFS image being written in one pass: file contents go to the image as they arrive
 * (whole blocks at once, tails to the spool), the tree of names and metadata is kept in memory,
 * and `finish` lays out directories and inodes after the data. `from-tar.ts` and `from-dir.ts`
 * drive it.
 */
import * as fs from "node:fs/promises";
import { StrataError } from "../core/errors.ts";
import { BLOCK_SIZE, EXTENDED_INODE_SIZE } from "./format.ts";
import { finishImage, type ImageStats } from "./_finish.ts";
import { ImageTree, type ImageNode, newNode } from "./image-tree.ts";
import { ImageSink } from "./_sink.ts";
import { TailSpool } from "./_tail-spool.ts";
import { encodeXattrs } from "./_xattrs.ts";

export type { ImageStats } from "./_finish.ts";

/** Suffix of the tail spool's scratch file, beside the image. */
const SPOOL_SUFFIX = ".tails";

/** Options of `ErofsWriter.create`. */
export interface ErofsWriterOptions {
  /** Bytes of file tails held in memory before they go to a scratch file beside the image. */
  spoolBudget?: number;
}

/** An image under construction at `path`. */
export class ErofsWriter {
  readonly path: string;
  readonly tree: ImageTree;
  #sink: ImageSink;
  #spool: TailSpool;
  #tail = new Uint8Array(BLOCK_SIZE);
  #done = false;

  private constructor(path: string, sink: ImageSink, spool: TailSpool, root: ImageNode) {
    this.path = path;
    this.#sink = sink;
    this.#spool = spool;
    this.tree = new ImageTree(root);
  }

  /**
   * Start an image at `path` (which must not exist) with `root` as its root directory.
   * @example
   * const w = await ErofsWriter.create("/l/abc.erofs.tmp", newNode("dir", { mode: 0o755, uid: 0, gid: 0, mtime: null }));
   * await w.finish({ sync: true });
   */
  static async create(path: string, root: ImageNode, opts: ErofsWriterOptions = {}): Promise<ErofsWriter> {
    const sink = await ImageSink.create(path);
    return new ErofsWriter(path, sink, new TailSpool(path + SPOOL_SUFFIX, opts.spoolBudget), root);
  }

  /** Whether a tail of `tail` bytes can sit after the inode of `node` (its xattrs already set). */
  static canInline(node: ImageNode, tail: number): boolean {
    const xattrs = encodeXattrs(node.xattrs);
    if (typeof xattrs === "string") return false;
    return tail > 0 && EXTENDED_INODE_SIZE + xattrs.body.byteLength + tail <= BLOCK_SIZE;
  }

  /**
   * Write the `size` content bytes of the file `node` from `body`, which must yield exactly that
   * many. Whole blocks go to the image now; the tail is spooled to be inlined, or padded to a
   * block when it would not fit beside the inode.
   */
  async writeData(node: ImageNode, size: number, body: AsyncIterable<Uint8Array>): Promise<void> {
    const whole = size - (size % BLOCK_SIZE);
    node.size = size;
    // Data starts block-aligned: whole blocks, or a tail that will not be inlined.
    node.blkaddr = this.#sink.block;
    // Block addresses are 32 bits: 16 TiB of 4 KiB blocks.
    if (node.blkaddr + Math.ceil(size / BLOCK_SIZE) > 0xffffffff) throw new StrataError("An image cannot hold more than 2^32 blocks");
    let written = 0;
    let tailFill = 0;
    for await (const chunk of body) {
      if (written + tailFill + chunk.byteLength > size) throw new StrataError(`File content of ${size} bytes ran long`);
      let rest = chunk;
      if (written < whole) {
        const n = Math.min(whole - written, rest.byteLength);
        await this.#sink.write(rest.subarray(0, n));
        written += n;
        rest = rest.subarray(n);
      }
      if (rest.byteLength > 0) {
        this.#tail.set(rest, tailFill);
        tailFill += rest.byteLength;
      }
    }
    if (written + tailFill !== size) throw new StrataError(`File content ended at ${written + tailFill} of ${size} bytes`);
    if (tailFill === 0) {
      node.tail = null;
      if (size === 0) node.blkaddr = 0;
    } else if (ErofsWriter.canInline(node, tailFill)) {
      node.tail = { spool: this.#spool.append(this.#tail.subarray(0, tailFill)) };
      if (whole === 0) node.blkaddr = 0;
    } else {
      await this.#sink.write(this.#tail.subarray(0, tailFill));
      await this.#sink.padToBlock();
      node.tail = "plain";
    }
  }

  /** Lay out the metadata, write the superblock, optionally fsync, and close. */
  async finish(opts: { sync?: boolean } = {}): Promise<ImageStats> {
    if (this.#done) throw new Error("The image is already finished");
    this.#done = true;
    try {
      const stats = await finishImage(this.tree.root, this.#sink, this.#spool);
      if (opts.sync) await this.#sink.sync();
      return stats;
    } catch (err) {
      await this.#discard();
      throw err;
    } finally {
      this.#spool.close();
      await this.#sink.close().catch(() => {});
    }
  }

  /** Give up: close and remove the partial image. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    this.#spool.close();
    await this.#sink.close().catch(() => {});
    await this.#discard();
  }

  async #discard(): Promise<void> {
    await fs.rm(this.path, { force: true });
  }
}

export { newNode };
