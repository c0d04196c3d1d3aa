/**
 * The image file as it is written: sequential, block-aligned appends gathered into large writes
 * (the daemon sends ~25 KB chunks), plus one positioned write for block 0 at the end.
 */
import * as fs from "node:fs/promises";
import { BLOCK_SIZE } from "./format.ts";

/** Appends are gathered into writes of this size. */
const WRITE_BUFFER = 1 << 20;

/** An image file open for writing; block 0 (the superblock) is left for `writeAt` at the end. */
export class ImageSink {
  #handle: fs.FileHandle;
  #buf = new Uint8Array(WRITE_BUFFER);
  #fill = 0;
  /** Offset in the file of `#buf[0]`. */
  #flushed = BLOCK_SIZE;

  private constructor(handle: fs.FileHandle) {
    this.#handle = handle;
  }

  /** Create `path` (it must not exist) for a new image. */
  static async create(path: string): Promise<ImageSink> {
    return new ImageSink(await fs.open(path, "wx", 0o644));
  }

  /** Bytes of the image so far, block 0 included. */
  get position(): number {
    return this.#flushed + this.#fill;
  }

  /** The next block address (the position must be block-aligned). */
  get block(): number {
    const pos = this.position;
    if (pos % BLOCK_SIZE !== 0) throw new Error(`Image position ${pos} is not block-aligned`);
    return pos / BLOCK_SIZE;
  }

  /** Append `bytes`. The caller must not change them until the next await of this sink. */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#fill + bytes.byteLength <= WRITE_BUFFER) {
      this.#buf.set(bytes, this.#fill);
      this.#fill += bytes.byteLength;
      if (this.#fill === WRITE_BUFFER) await this.flush();
      return;
    }
    await this.flush();
    if (bytes.byteLength >= WRITE_BUFFER) {
      await this.#writeAll(bytes, this.#flushed);
      this.#flushed += bytes.byteLength;
      return;
    }
    this.#buf.set(bytes, 0);
    this.#fill = bytes.byteLength;
  }

  /** Append zeros up to the next block boundary. */
  async padToBlock(): Promise<void> {
    const rem = this.position % BLOCK_SIZE;
    if (rem !== 0) await this.write(new Uint8Array(BLOCK_SIZE - rem));
  }

  /** Write what is gathered. */
  async flush(): Promise<void> {
    if (this.#fill === 0) return;
    await this.#writeAll(this.#buf.subarray(0, this.#fill), this.#flushed);
    this.#flushed += this.#fill;
    this.#fill = 0;
  }

  /** Write `bytes` at `offset`, which must lie before everything still gathered. */
  async writeAt(bytes: Uint8Array, offset: number): Promise<void> {
    await this.flush();
    await this.#writeAll(bytes, offset);
  }

  /** fsync the file. */
  async sync(): Promise<void> {
    await this.flush();
    await this.#handle.sync();
  }

  /** Close the file (without flushing: call `flush` or `sync` first to keep what is gathered). */
  async close(): Promise<void> {
    await this.#handle.close();
  }

  async #writeAll(bytes: Uint8Array, offset: number): Promise<void> {
    for (let at = 0; at < bytes.byteLength; ) {
      const { bytesWritten } = await this.#handle.write(bytes, at, bytes.byteLength - at, offset + at);
      at += bytesWritten;
    }
  }
}
