/**
 * The layer trees the in-process bench scripts (test/archive/apply-bench.ts, test/erofs/*-bench.ts)
 * measure, as tar streams made on the fly: 10k small files, a mixed tree sized like a
 * distribution's /usr, and one big file. Runtime-neutral (Bun and Deno).
 */
import { spawnSync } from "node:child_process";
import { TarWriter } from "../../src/archive/tar-writer.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";

/** What the daemon's chunked upload delivers per chunk. */
export const UPLOAD_CHUNK = 25_000;

/** A tree's entries: each header with its body (bytes, a stream of bytes, or none). */
export type BenchEntries = () => AsyncIterable<readonly [TarHeader, AsyncIterable<Uint8Array> | Uint8Array | undefined]>;

/** A regular file's header unless `h` says otherwise. */
export const benchHeader = (h: Partial<TarHeader> & { name: string }): TarHeader => ({
  type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 1_600_000_000, nsec: 1 },
  linkname: "", devmajor: 0, devminor: 0, xattrs: new Map(), ...h,
});

/**
 * A tar stream made on the fly and re-chunked to {@link UPLOAD_CHUNK}, never held whole in memory;
 * `count.bytes` adds up what it delivered.
 */
export function tarOf(entries: BenchEntries, count: { bytes: number } = { bytes: 0 }): ReadableStream<Uint8Array> {
  const writer = new TarWriter();
  (async () => {
    for await (const [h, body] of entries()) await writer.add(h, body);
    await writer.finish();
  })().catch((err) => writer.abort(err));
  const reader = writer.stream.getReader();
  let pending: Uint8Array | undefined;
  return new ReadableStream({
    async pull(c) {
      if (!pending || pending.byteLength === 0) {
        const r = await reader.read();
        if (r.done) return c.close();
        pending = r.value;
      }
      const out = pending.slice(0, UPLOAD_CHUNK);
      count.bytes += out.byteLength;
      c.enqueue(out);
      pending = pending.subarray(UPLOAD_CHUNK);
    },
  });
}

/** A whole tar in memory, for a bench that applies the same bytes to several drivers. */
export async function tarBytes(entries: BenchEntries): Promise<Uint8Array> {
  return new Uint8Array(await new Response(tarOf(entries)).arrayBuffer());
}

/** 100 directories holding `files` files of 1,000 bytes. */
export function smallTree(files = 10_000): BenchEntries {
  return async function* () {
    for (let d = 0; d < 100; d++) yield [benchHeader({ name: `d${d}/`, type: "directory", mode: 0o755 }), undefined] as const;
    const body = new TextEncoder().encode("x".repeat(1000));
    for (let i = 0; i < files; i++) yield [benchHeader({ name: `d${i % 100}/f${i}`, size: body.byteLength }), body] as const;
  };
}

/** 8,000 files sized like a distribution's /usr (mostly small, some tens of KB, a few MB), and a symlink per ten files unless told not to. */
export function mixedTree(opts: { symlinks?: boolean } = {}): BenchEntries {
  const symlinks = opts.symlinks ?? true;
  return async function* () {
    const sizes = [120, 800, 2_500, 3_900, 6_000, 14_000, 33_000, 90_000, 400_000, 2_500_000];
    const data = new Uint8Array(2_500_000).map((_, i) => (i * 31) & 0xff);
    for (let d = 0; d < 200; d++) yield [benchHeader({ name: `usr/lib/d${d}/`, type: "directory", mode: 0o755 }), undefined] as const;
    for (let i = 0; i < 8_000; i++) {
      const size = sizes[(i * 7) % (i % 50 === 0 ? 10 : 8)];
      yield [benchHeader({ name: `usr/lib/d${i % 200}/f${i}`, size, mtime: { sec: 1_600_000_000 + (i % 3), nsec: 0 } }), data.subarray(0, size)] as const;
      if (symlinks && i % 10 === 0) yield [benchHeader({ name: `usr/lib/d${i % 200}/l${i}`, type: "symlink", linkname: `f${i}` }), undefined] as const;
    }
  };
}

/** One file of `size` bytes, its body streamed in 1 MiB blocks. */
export function bigFile(size: number): BenchEntries {
  return async function* () {
    const block = new Uint8Array(1 << 20).fill(7);
    async function* body() {
      for (let left = size; left > 0; left -= block.byteLength) yield left >= block.byteLength ? block : block.subarray(0, left);
    }
    yield [benchHeader({ name: "big", size }), body()] as const;
  };
}

/** Disk space used under `p`, in bytes, as du counts it. */
export function du(p: string): number {
  return Number(spawnSync("du", ["-sB1", p], { encoding: "utf8" }).stdout.split("\t")[0]);
}

/** Inodes under `p` (itself included). */
export function inodes(p: string): number {
  return Number(spawnSync("sh", ["-c", `find '${p}' | wc -l`], { encoding: "utf8" }).stdout.trim());
}
