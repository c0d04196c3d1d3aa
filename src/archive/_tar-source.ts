/**
 * A pull-based cursor over a `ReadableStream<Uint8Array>`: hands out views of the incoming chunks
 * (copying only when a header straddles two chunks) and reads from the stream only when the
 * bytes already held are used up, so the producer sees backpressure.
 */
import { InvalidLayerError } from "../core/errors.ts";

const EMPTY = new Uint8Array(0);

/** Byte cursor over a stream; the reader's only way to touch the input. */
export class ByteSource {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunk: Uint8Array = EMPTY;
  #pos = 0;
  /** Absolute offset of `#chunk[0]` in the stream. */
  #base = 0;
  #eof = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** Bytes consumed so far: the archive offset of the next byte. */
  get offset(): number {
    return this.#base + this.#pos;
  }

  /** Pull one more non-empty chunk; false at end of stream. */
  async #pull(): Promise<boolean> {
    while (!this.#eof) {
      const { value, done } = await this.#reader.read();
      if (done) {
        this.#eof = true;
        break;
      }
      if (!(value instanceof Uint8Array)) {
        throw new InvalidLayerError(`Invalid tar stream: expected Uint8Array chunks, got ${typeof value}`);
      }
      if (value.byteLength === 0) continue;
      this.#base += this.#chunk.byteLength;
      this.#chunk = value;
      this.#pos = 0;
      return true;
    }
    return false;
  }

  /** `n` bytes as a view of the current chunk when they are all there already, else undefined. */
  takeSync(n: number): Uint8Array | undefined {
    if (this.#chunk.byteLength - this.#pos < n) return undefined;
    const out = this.#chunk.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  /** Exactly `n` bytes, or fewer only at end of stream. A view when possible, else a copy. */
  async take(n: number): Promise<Uint8Array> {
    const view = this.takeSync(n);
    if (view) return view;
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (this.#pos === this.#chunk.byteLength && !(await this.#pull())) return out.subarray(0, got);
      const part = this.#chunk.subarray(this.#pos, this.#pos + (n - got));
      out.set(part, got);
      got += part.byteLength;
      this.#pos += part.byteLength;
    }
    return out;
  }

  /** Up to `max` bytes from the current chunk without waiting, or undefined when none are buffered. */
  chunkSync(max: number): Uint8Array | undefined {
    const avail = this.#chunk.byteLength - this.#pos;
    if (avail === 0 || max === 0) return undefined;
    const n = avail < max ? avail : max;
    const out = this.#chunk.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  /** Up to `max` (> 0) bytes, waiting for the stream if needed; an empty array at end of stream. */
  async chunk(max: number): Promise<Uint8Array> {
    const view = this.chunkSync(max);
    if (view) return view;
    if (!(await this.#pull())) return EMPTY;
    return this.chunkSync(max)!;
  }

  /** Discard `n` bytes; returns how many were actually there (fewer only at end of stream). */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      const avail = this.#chunk.byteLength - this.#pos;
      if (avail === 0) {
        if (!(await this.#pull())) break;
        continue;
      }
      const step = avail < left ? avail : left;
      this.#pos += step;
      left -= step;
    }
    return n - left;
  }

  /** Discard `n` bytes if they are all buffered; true when done. */
  skipSync(n: number): boolean {
    if (this.#chunk.byteLength - this.#pos < n) return false;
    this.#pos += n;
    return true;
  }

  /** Stop reading: tell the producer nothing more will be consumed. Never throws. */
  close(reason?: unknown): void {
    this.#chunk = EMPTY;
    this.#pos = 0;
    // The producer may already have failed or closed; that is not the consumer's problem.
    this.#reader.cancel(reason).catch(() => {});
  }
}
