/**
 * Regular-file writes of a layer apply: one new file per entry, created O_EXCL | O_NOFOLLOW (never
 * through a symlink that appeared at the name, never into another entry's file), its content and
 * then its metadata written on that one descriptor. Every call is a synchronous FFI syscall: a
 * write of a few KiB costs microseconds, while a thread-pool round trip per call (node:fs's
 * promises) cost ten times that, and a layer is mostly small files (measured: 10k files of 1-4 KiB
 * took 4.1 s through fs.promises, see bench/plugin.ts).
 */
import type { Sys } from "../sys/types.ts";
import { type Metadata, setMetadataFd } from "./_metadata.ts";

/** Content is gathered into writes of up to this size: the daemon sends ~25 KB chunks. */
const WRITE_BUFFER = 1024 * 1024;

/** The file writes of one apply (one buffer, reused). */
export class FileWrites {
  #sys: Sys;
  #buf = new Uint8Array(WRITE_BUFFER);

  constructor(sys: Sys) {
    this.#sys = sys;
  }

  /**
   * Create `abs` (it must not exist), write `body` to it, then `meta` (owner, xattrs, mode, times).
   * A failure leaves the partial file for the caller's cleanup of the layer.
   */
  async write(abs: string, body: AsyncIterable<Uint8Array>, meta: Metadata): Promise<void> {
    const sys = this.#sys;
    const fd = sys.createNew(abs, 0o600);
    try {
      const buf = this.#buf;
      let len = 0;
      for await (const chunk of body) {
        if (len + chunk.byteLength > buf.byteLength) {
          if (len > 0) sys.writeAll(fd, buf.subarray(0, len));
          len = 0;
        }
        if (chunk.byteLength >= buf.byteLength) sys.writeAll(fd, chunk);
        else (buf.set(chunk, len), (len += chunk.byteLength));
      }
      if (len > 0) sys.writeAll(fd, buf.subarray(0, len));
      setMetadataFd(sys, fd, meta, true);
    } finally {
      sys.close(fd);
    }
  }
}
