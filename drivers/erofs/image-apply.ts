/**
 * ApplyDiff of an image layer: the tar becomes `layer.erofs` as it streams in, and is kept as it
 * came in `layer.tar` (exact diffs), both built in a staging dir, synced, and renamed into the
 * layer's directory with the image last: a layer whose image is in place is applied.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { type FromTarOptions, writeImageFromTar } from "../../src/erofs/from-tar.ts";
import { syncEntry } from "../../src/store/durable.ts";
import { removeBeneath } from "../../src/store/remove-tree.ts";
import type { Sys } from "../../src/sys/types.ts";
import { IMAGE_FILE, SIZE_FILE, TAR_FILE } from "./layout.ts";

/** What `applyImage` passes to the writer, and a hook before the renames (fault injection). */
export interface ApplyImageOptions extends Pick<FromTarOptions, "uidMaps" | "gidMaps" | "root" | "onEntry"> {
  sys: Sys;
  beforeSwap?: () => void;
}

/**
 * Write `tar` as the image (and kept tar, and size) of the layer at `layerDir`, through `staging`
 * (made here, removed after); returns ApplyDiff's size. On failure the upload is cancelled and
 * the layer's directory is as it was.
 * @example
 * const size = await applyImage(request.body!, "/h/.tmp/apply-abc-1", "/h/abc", { sys, root });
 */
export async function applyImage(tar: ReadableStream<Uint8Array>, staging: string, layerDir: string, opts: ApplyImageOptions): Promise<number> {
  await fs.mkdir(staging, { mode: 0o700 });
  const source = tar.getReader();
  try {
    const tarFile = await fs.open(path.join(staging, TAR_FILE), "wx", 0o600);
    let result;
    try {
      const keep = async (chunk: Uint8Array) => {
        for (let at = 0; at < chunk.byteLength; ) at += (await tarFile.write(chunk, at)).bytesWritten;
      };
      // The tar is kept as it came while the image is written from it. The reader stops at the
      // end-of-archive blocks and lets go of its stream; that must not cancel the upload, whose
      // trailing bytes (record padding) belong to the diff the daemon digested.
      const forward = new ReadableStream<Uint8Array>({
        async pull(c) {
          const r = await source.read();
          if (r.done) return c.close();
          await keep(r.value);
          c.enqueue(r.value);
        },
      }, { highWaterMark: 0 });
      result = await writeImageFromTar(forward, path.join(staging, IMAGE_FILE), { ...opts, sync: true });
      for (let r = await source.read(); !r.done; r = await source.read()) await keep(r.value);
      await tarFile.sync();
    } finally {
      await tarFile.close();
    }
    await fs.writeFile(path.join(staging, SIZE_FILE), String(result.tarSize), { mode: 0o600 });
    // Synced like the image and the tar: a rename must never publish data still in the page cache.
    await syncEntry(opts.sys, path.join(staging, SIZE_FILE));
    opts.beforeSwap?.();
    for (const name of [TAR_FILE, SIZE_FILE, IMAGE_FILE]) await fs.rename(path.join(staging, name), path.join(layerDir, name));
    await syncEntry(opts.sys, layerDir);
    return result.tarSize;
  } catch (err) {
    // Unblock the daemon's upload if the apply stopped before its end.
    await source.cancel().catch(() => {});
    throw err;
  } finally {
    source.releaseLock();
    await removeBeneath(opts.sys, path.dirname(staging), path.basename(staging));
  }
}
