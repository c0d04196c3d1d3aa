/**
 * Regular-file writes of a layer apply. A large file is streamed to disk in order; a small one
 * (whole in memory already, at most SMALL_FILE bytes) is written in the background while the
 * next entries are read, because each file costs several thread-pool round trips and a layer is
 * mostly small files. The caller waits (`drain`) before anything that could see a half-written
 * file: an entry at or under a path still being written, or any entry other than a small file.
 */
import * as fs from "node:fs/promises";

/** Files up to this size are read whole and written in parallel. */
export const SMALL_FILE = 128 * 1024;
/** Small files written at once. */
const PARALLEL = 8;
/** Large-file content is gathered into writes of this size: the daemon sends ~25 KB chunks. */
const WRITE_BUFFER = 256 * 1024;

/** Write all of `bytes` at the handle's position. */
async function _writeAll(handle: fs.FileHandle, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.byteLength; ) {
    at += (await handle.write(bytes, at, bytes.byteLength - at)).bytesWritten;
  }
}

/** The writes of one apply. */
export class FileWrites {
  #inflight = new Map<string, Promise<void>>();
  #failure: { err: unknown } | undefined;
  #buf = new Uint8Array(WRITE_BUFFER);

  /** True when `rel` or one of its ancestors is still being written. */
  busy(rel: string): boolean {
    if (this.#inflight.size === 0) return false;
    if (this.#inflight.has(rel)) return true;
    for (let slash = rel.indexOf("/"); slash >= 0; slash = rel.indexOf("/", slash + 1)) {
      if (this.#inflight.has(rel.slice(0, slash))) return true;
    }
    return false;
  }

  /** Wait for every write in flight; throws the first failure. */
  async drain(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.all(this.#inflight.values());
    if (this.#failure) throw this.#failure.err;
  }

  /** Wait for every write in flight, ignoring failures (the apply is failing already). */
  async settle(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.all(this.#inflight.values());
  }

  /**
   * Write `bytes` to the new file `abs` in the background, then run `after` (its metadata).
   * Resolves once a slot is free; a failure surfaces from the next `drain`.
   */
  async start(rel: string, abs: string, bytes: Uint8Array, after: () => void): Promise<void> {
    while (this.#inflight.size >= PARALLEL) await Promise.race(this.#inflight.values());
    if (this.#failure) throw this.#failure.err;
    const task = (async () => {
      // O_EXCL: never follow a symlink that appeared at the name, never share a file with another entry.
      await fs.writeFile(abs, bytes, { flag: "wx", mode: 0o600 });
      after();
    })()
      .catch((err) => void (this.#failure ??= { err }))
      .finally(() => this.#inflight.delete(rel));
    this.#inflight.set(rel, task);
  }

  /** Stream a file of any size to the new file `abs`, in order, `WRITE_BUFFER` bytes at a time. */
  async stream(abs: string, body: AsyncIterable<Uint8Array>): Promise<void> {
    const handle = await fs.open(abs, "wx", 0o600);
    try {
      const buf = this.#buf;
      let len = 0;
      for await (const chunk of body) {
        if (len + chunk.byteLength > buf.byteLength) {
          await _writeAll(handle, buf.subarray(0, len));
          len = 0;
        }
        if (chunk.byteLength >= buf.byteLength) await _writeAll(handle, chunk);
        else (buf.set(chunk, len), (len += chunk.byteLength));
      }
      if (len > 0) await _writeAll(handle, buf.subarray(0, len));
    } finally {
      await handle.close();
    }
  }
}

/** The whole body of a small file, copied out of the reader's chunks (which it may reuse). */
export async function readSmall(body: AsyncIterable<Uint8Array>, size: number): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  let at = 0;
  for await (const chunk of body) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return at === size ? out : out.subarray(0, at);
}
