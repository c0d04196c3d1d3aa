/** File helpers of the erofs driver: a layer root's attributes, and a file as a stream. */
import * as fs from "node:fs/promises";
import { isOverlayXattr } from "../../src/archive/whiteouts.ts";
import type { NodeInit } from "../../src/erofs/image-tree.ts";
import type { Sys } from "../../src/sys/types.ts";

/** The mode, owner, time and (non-overlay) xattrs of the directory `dir`, as an image root takes them. */
export function rootAttrs(sys: Sys, dir: string): NodeInit {
  const st = sys.lstat(dir);
  const xattrs = new Map<string, Uint8Array>();
  for (const name of sys.llistxattr(dir)) {
    if (isOverlayXattr(name)) continue;
    const value = sys.lgetxattr(dir, name);
    if (value !== null) xattrs.set(name, value);
  }
  return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime, xattrs };
}

/** Give the directory `to` the attributes `attrs` (from `rootAttrs`). */
export async function applyRootAttrs(sys: Sys, attrs: NodeInit, to: string): Promise<void> {
  for (const [name, value] of attrs.xattrs ?? []) sys.lsetxattr(to, name, value);
  sys.lchown(to, attrs.uid, attrs.gid);
  await fs.chmod(to, attrs.mode);
  sys.lutimes(to, attrs.mtime!, attrs.mtime!);
}

/** The file at `file` as a byte stream, read as the consumer pulls. */
export function streamFile(file: string): ReadableStream<Uint8Array> {
  let handle: fs.FileHandle | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      handle ??= await fs.open(file, "r");
      const buf = new Uint8Array(256 * 1024);
      const { bytesRead } = await handle.read(buf, 0, buf.byteLength, null);
      if (bytesRead === 0) {
        await handle.close();
        handle = undefined;
        return c.close();
      }
      c.enqueue(buf.subarray(0, bytesRead));
    },
    async cancel() {
      await handle?.close();
    },
  }, { highWaterMark: 0 });
}
