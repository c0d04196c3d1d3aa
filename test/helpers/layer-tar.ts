/** Test helpers: build layer tars in memory with strata's own TarWriter. */
import type { TarHeader } from "../../src/archive/tar-types.ts";
import { TarWriter } from "../../src/archive/tar-writer.ts";

/** A header with defaults for everything not given. */
export function entry(h: Partial<TarHeader> & { name: string }): TarHeader {
  const type = h.type ?? "file";
  return {
    type,
    mode: type === "directory" ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: { sec: 1_600_000_000, nsec: 0 },
    linkname: "",
    devmajor: 0,
    devminor: 0,
    xattrs: new Map(),
    ...h,
  };
}

/** A file entry with text content. */
export function file(name: string, content: string, h: Partial<TarHeader> = {}): [TarHeader, Uint8Array] {
  const body = new TextEncoder().encode(content);
  return [entry({ ...h, name, type: "file", size: body.byteLength }), body];
}

/** The bytes of a tar holding `items` (headers, or [header, body] pairs). */
export async function makeTar(items: Array<TarHeader | [TarHeader, Uint8Array]>): Promise<Uint8Array> {
  const writer = new TarWriter();
  const collected = new Response(writer.stream).arrayBuffer();
  for (const item of items) {
    if (Array.isArray(item)) await writer.add(item[0], item[1]);
    else await writer.add(item);
  }
  await writer.finish();
  return new Uint8Array(await collected);
}

/** A ReadableStream over bytes, delivered in chunks like the daemon's ~25 KB chunked body. */
export function streamOf(bytes: Uint8Array, chunk = 25_000): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.byteLength) return c.close();
      c.enqueue(bytes.subarray(at, at + chunk));
      at += chunk;
    },
  });
}

/** Read a whole stream into bytes. */
export async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
