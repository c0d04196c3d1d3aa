/**
 * Streaming tar writer: entries in, a `ReadableStream` of POSIX ustar (+ PAX where needed) out.
 * Each `add` waits until the reader has room, so a slow consumer (the daemon pulling a Diff) paces
 * the disk reads instead of the archive piling up in memory.
 */
import { InvalidLayerError, StrataError } from "../core/errors.ts";
import type { TarHeader } from "./tar-types.ts";
import { BLOCK, padding } from "./_tar-fields.ts";
import { encodeHeader } from "./_tar-encode.ts";

/** Tuning for a TarWriter. */
export interface TarWriterOptions {
  /** Bytes the stream may hold unread before `add` waits. Default 1 MiB. */
  highWaterMark?: number;
}

/** Writes below this size are copied into a shared buffer: many small files make few large chunks. */
const COALESCE_BELOW = 16 * 1024;
const BUFFER_SIZE = 64 * 1024;
/** Padding and the end marker; shared because writes this small are always copied, never enqueued. */
const ZEROS = new Uint8Array(2 * BLOCK);

/**
 * A tar archive being written. Consume `stream` while adding entries (the adds wait for it).
 * Output is batched in chunks of up to 64 KiB; large body chunks are passed through uncopied,
 * so they must not be modified after being handed over.
 * @example
 * ```ts
 * const writer = new TarWriter();
 * (async () => {
 *   await writer.add({ ...header, name: "etc/hostname", size: 4 }, new TextEncoder().encode("box\n"));
 *   await writer.add(bigFileHeader, fileChunks); // AsyncIterable<Uint8Array> of exactly header.size bytes
 *   await writer.finish();
 * })().catch((err) => writer.abort(err));
 * return new Response(writer.stream); // the adds wait for this reader: never await them before handing it over
 * ```
 */
export class TarWriter {
  /** The archive bytes. */
  readonly stream: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #wake: (() => void) | undefined;
  #state: "open" | "finished" | "failed" = "open";
  #error: unknown;
  #tail: Promise<void> = Promise.resolve();
  #buf = new Uint8Array(BUFFER_SIZE);
  #len = 0;

  constructor(options: TarWriterOptions = {}) {
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller;
        },
        pull: () => this.#wakeUp(),
        cancel: (reason) => {
          this.#fail(new StrataError("Tar stream was cancelled by its reader", { cause: reason }), false);
        },
      },
      { highWaterMark: options.highWaterMark ?? 1 << 20, size: (chunk) => chunk?.byteLength ?? 0 },
    );
  }

  /**
   * Append one entry. `body` must deliver exactly `header.size` bytes: a mismatch before anything
   * is written throws and leaves the writer usable; one found while streaming (a file that changed
   * size) fails the whole stream, because the bytes already sent cannot be taken back.
   */
  add(header: TarHeader, body?: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Uint8Array): Promise<void> {
    return this.#serial(async () => {
      const encoded = encodeHeader(header);
      const name = JSON.stringify(header.name);
      if (body === undefined || body instanceof Uint8Array) {
        const got = body?.byteLength ?? 0;
        if (got !== header.size) {
          throw new InvalidLayerError(`Cannot write tar entry ${name}: header says ${header.size} bytes, body has ${got}`);
        }
      }
      try {
        await this.#write(encoded);
        if (body instanceof Uint8Array) {
          if (body.byteLength > 0) await this.#write(body);
        } else if (body !== undefined) {
          let written = 0;
          for await (const chunk of body) {
            if (!(chunk instanceof Uint8Array)) throw new StrataError(`Body of ${name} yielded a ${typeof chunk}, not bytes`);
            written += chunk.byteLength;
            if (written > header.size) throw new StrataError(`File ${name} grew while being archived: more than ${header.size} bytes`);
            if (chunk.byteLength > 0) await this.#write(chunk);
          }
          if (written < header.size) {
            throw new StrataError(`File ${name} shrank while being archived: ${written} of ${header.size} bytes`);
          }
        }
        const pad = padding(header.size);
        if (pad > 0) await this.#write(ZEROS.subarray(0, pad));
      } catch (err) {
        this.#fail(err, true);
        throw err;
      }
    });
  }

  /** Write the end-of-archive marker (two zero blocks) and close the stream. */
  finish(): Promise<void> {
    return this.#serial(async () => {
      try {
        await this.#write(ZEROS);
        await this.#flush();
        this.#state = "finished";
        this.#controller.close();
      } catch (err) {
        this.#fail(err, true);
        throw err;
      }
    });
  }

  /** Fail the stream: its reader gets `err`, and later `add`/`finish` calls reject with it. */
  abort(err: unknown): void {
    this.#fail(err, true);
  }

  #serial(op: () => Promise<void>): Promise<void> {
    const run = this.#tail.then(() => {
      if (this.#state === "failed") throw this.#error;
      if (this.#state === "finished") throw new StrataError("Tar writer is already finished");
      return op();
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    this.#throwIfFailed();
    if (bytes.byteLength < COALESCE_BELOW) {
      if (this.#len + bytes.byteLength > BUFFER_SIZE) await this.#flush();
      this.#buf.set(bytes, this.#len);
      this.#len += bytes.byteLength;
      return;
    }
    await this.#flush();
    await this.#push(bytes);
  }

  async #flush(): Promise<void> {
    if (this.#len === 0) return;
    const out = this.#buf.subarray(0, this.#len);
    // A fresh buffer: the reader owns the one just handed over.
    this.#buf = new Uint8Array(BUFFER_SIZE);
    this.#len = 0;
    await this.#push(out);
  }

  async #push(chunk: Uint8Array): Promise<void> {
    this.#throwIfFailed();
    this.#controller.enqueue(chunk);
    // Wait for the reader to make room; `pull` (or a failure) wakes us.
    while ((this.#controller.desiredSize ?? 0) <= 0) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#throwIfFailed();
    }
  }

  #throwIfFailed(): void {
    if (this.#state === "failed") throw this.#error;
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #fail(err: unknown, errorStream: boolean): void {
    if (this.#state !== "open") return;
    this.#state = "failed";
    this.#error = err;
    this.#buf = new Uint8Array(0);
    this.#len = 0;
    if (errorStream) this.#controller.error(err);
    this.#wakeUp();
  }
}
