/**
 * The body of one entry as the reader hands it out: an async iterator over views of the input
 * chunks, limited to the entry's size. Reads go through one queue so that a consumer who moves on
 * while a read is still pending cannot interleave two reads of the shared cursor.
 */
import { InvalidLayerError, StrataError } from "../core/errors.ts";
import { padding } from "./_tar-fields.ts";
import type { ByteSource } from "./_tar-source.ts";

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/** An entry's content; `retire()` is the reader's hook to discard what the consumer left. */
export class EntryBody implements AsyncIterableIterator<Uint8Array> {
  #src: ByteSource;
  #name: string;
  #remaining: number;
  #padding: number;
  #retired = false;
  #pending = 0;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(src: ByteSource, name: string, size: number) {
    this.#src = src;
    this.#name = name;
    this.#remaining = size;
    this.#padding = padding(size);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** The next view of the content; views stay valid after the reader moves on (they are never reused). */
  next(): Promise<IteratorResult<Uint8Array>> {
    if (this.#pending === 0 && !this.#retired) {
      if (this.#remaining === 0) return Promise.resolve(DONE);
      const view = this.#src.chunkSync(this.#remaining);
      if (view) {
        this.#remaining -= view.byteLength;
        return Promise.resolve({ done: false, value: view });
      }
    }
    return this.#serial(() => this.#nextSlow());
  }

  async #nextSlow(): Promise<IteratorResult<Uint8Array>> {
    if (this.#retired) throw new StrataError(`Tar entry "${this.#name}" was read after the reader moved on`);
    if (this.#remaining === 0) return DONE;
    const view = await this.#src.chunk(this.#remaining);
    if (view.byteLength === 0) throw this.#truncated();
    this.#remaining -= view.byteLength;
    return { done: false, value: view };
  }

  /** Discard the rest of the content. */
  skip(): Promise<void> {
    return this.#serial(async () => {
      const n = this.#remaining;
      this.#remaining = 0;
      if ((await this.#src.skip(n)) < n) throw this.#truncated();
    });
  }

  /**
   * Called by the reader before it reads the next header: skip what is left of the content and the
   * block padding. Returns undefined when that was possible without waiting, to keep the per-entry
   * cost of small files off the promise machinery.
   */
  retire(): Promise<void> | undefined {
    if (this.#pending === 0 && this.#src.skipSync(this.#remaining + this.#padding)) {
      this.#remaining = 0;
      this.#retired = true;
      return undefined;
    }
    return this.#serial(async () => {
      const n = this.#remaining + this.#padding;
      this.#remaining = 0;
      this.#retired = true;
      if ((await this.#src.skip(n)) < n) throw this.#truncated();
    });
  }

  #truncated(): InvalidLayerError {
    return new InvalidLayerError(`Unexpected end of archive in the body of "${this.#name}"`);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    this.#pending++;
    const run = this.#tail.then(fn).finally(() => {
      this.#pending--;
    });
    this.#tail = run.catch(() => {});
    return run;
  }
}
