/**
 * File tails waiting for their inode. A tail (the last partial block of a file) is stored inline
 * after the inode, and inodes are written after all file data, so tails wait here: in memory up to
 * a budget, then in a scratch file beside the image, so that a layer of a million small files
 * cannot make the writer hold its whole contents.
 */
import * as fs from "node:fs";

/** Tails are packed into slabs of this size; a tail never straddles two. */
const SLAB = 1 << 20;
/** Memory the spool may hold before it moves full slabs to its file. */
export const DEFAULT_SPOOL_BUDGET = 64 << 20;

/** An append-only store of small byte strings, addressed by the offset `append` returns. */
export class TailSpool {
  #slabs: Array<Uint8Array | undefined> = [];
  #fill = SLAB;
  #held = 0;
  #budget: number;
  #path: string;
  #fd = -1;

  /** `path`: the scratch file to use past `budget` bytes (created only then, removed by `close`). */
  constructor(path: string, budget = DEFAULT_SPOOL_BUDGET) {
    this.#path = path;
    this.#budget = budget;
  }

  /** Store a copy of `bytes` (at most one slab); returns its address. */
  append(bytes: Uint8Array): number {
    if (this.#fill + bytes.byteLength > SLAB) {
      if (this.#held + SLAB > this.#budget) this.#spill();
      this.#slabs.push(new Uint8Array(SLAB));
      this.#held += SLAB;
      this.#fill = 0;
    }
    const index = this.#slabs.length - 1;
    this.#slabs[index]!.set(bytes, this.#fill);
    const at = index * SLAB + this.#fill;
    this.#fill += bytes.byteLength;
    return at;
  }

  /** The `length` bytes stored at `at`. */
  read(at: number, length: number): Uint8Array {
    const slab = this.#slabs[Math.floor(at / SLAB)];
    if (slab) return slab.subarray(at % SLAB, (at % SLAB) + length);
    const out = new Uint8Array(length);
    for (let got = 0; got < length; ) {
      const n = fs.readSync(this.#fd, out, got, length - got, at + got);
      if (n === 0) throw new Error(`Tail spool "${this.#path}" is short at ${at + got}`);
      got += n;
    }
    return out;
  }

  /** Whether the spool went to its file (for tests and stats). */
  get spilled(): boolean {
    return this.#fd >= 0;
  }

  /** Drop everything and remove the scratch file. */
  close(): void {
    this.#slabs = [];
    if (this.#fd < 0) return;
    fs.closeSync(this.#fd);
    this.#fd = -1;
    fs.rmSync(this.#path, { force: true });
  }

  /** Move every full slab in memory to the file. */
  #spill(): void {
    if (this.#fd < 0) this.#fd = fs.openSync(this.#path, "wx+", 0o600);
    for (let i = 0; i < this.#slabs.length; i++) {
      const slab = this.#slabs[i];
      if (!slab) continue;
      for (let done = 0; done < SLAB; ) done += fs.writeSync(this.#fd, slab, done, SLAB - done, i * SLAB + done);
      this.#slabs[i] = undefined;
      this.#held -= SLAB;
    }
  }
}
