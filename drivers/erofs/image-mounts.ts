/**
 * Image layers' mounts, shared and reference counted: an image is mounted at the first Get of any
 * layer whose chain holds it and unmounted when the last such layer is Put. File-backed where the
 * kernel mounts an EROFS file directly (Linux 6.12), else on a loop device with autoclear, so a
 * crash can never leak the device.
 */
import * as fs from "node:fs/promises";
import { ErrnoError, hasCode, StrataError } from "../../src/core/errors.ts";
import type { Logger } from "../../src/core/log.ts";
import { unmount } from "../../src/mount/mounter.ts";
import { assertOwnDir } from "../../src/store/own.ts";
import { MS, type Sys } from "../../src/sys/types.ts";

/** How images are mounted. */
export type ImageMode = "file" | "loop";

const FLAGS = MS.RDONLY | MS.NODEV | MS.NOSUID;

/**
 * Mount the EROFS image `file` read-only at `target`: file-backed when `mode` is "file", else on
 * a loop device. Throws a StrataError naming the image.
 */
export function mountImage(sys: Sys, file: string, target: string, mode: ImageMode): void {
  try {
    if (mode === "file") {
      sys.mount(file, target, "erofs", FLAGS, "");
      return;
    }
    const loop = sys.loopAttach(file);
    try {
      sys.mount(loop.device, target, "erofs", FLAGS, "");
    } finally {
      // With autoclear the mount now holds the device; closing our fd leaves it to the mount.
      sys.close(loop.fd);
    }
  } catch (err) {
    throw new StrataError(`Cannot mount image "${file}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/**
 * Whether this kernel mounts an EROFS file directly: it does when mount(2) of the file succeeds;
 * a kernel without file-backed EROFS answers ENOTBLK.
 */
export function probeImageMode(sys: Sys, file: string, target: string): ImageMode {
  try {
    sys.mount(file, target, "erofs", FLAGS, "");
  } catch (err) {
    if (err instanceof ErrnoError && (hasCode(err, "ENOTBLK") || hasCode(err, "EINVAL"))) return "loop";
    throw err;
  }
  unmount(sys, target);
  return "file";
}

/** Reference counts of mounted images, by layer ID. Callers serialise per ID. */
export class ImageMounts {
  #sys: Sys;
  #log: Logger;
  #mode: ImageMode;
  #refs = new Map<string, number>();

  constructor(sys: Sys, log: Logger, mode: ImageMode) {
    this.#sys = sys;
    this.#log = log;
    this.#mode = mode;
  }

  /** How images are mounted here. */
  get mode(): ImageMode {
    return this.#mode;
  }

  /** How many images are mounted. */
  get active(): number {
    return this.#refs.size;
  }

  /** Outstanding references on `id`'s image. */
  count(id: string): number {
    return this.#refs.get(id) ?? 0;
  }

  /** Take a reference on the image of `id`, mounting `file` at `target` for the first. */
  async acquire(id: string, file: string, target: string): Promise<void> {
    const n = this.count(id);
    if (n > 0) {
      this.#refs.set(id, n + 1);
      return;
    }
    // The mount point is ours and made afresh: a symlink planted there goes, as a link (mount
    // would follow it and put the image wherever it points).
    if ((await fs.lstat(target).catch(() => null))?.isSymbolicLink()) await fs.unlink(target);
    await fs.mkdir(target, { mode: 0o700 }).catch((err) => {
      if (!hasCode(err, "EEXIST")) throw err;
    });
    await assertOwnDir(target);
    mountImage(this.#sys, file, target, this.#mode);
    this.#refs.set(id, 1);
  }

  /** Count one more reference on an image a previous process left mounted (restart adoption). */
  adopt(id: string): void {
    this.#refs.set(id, this.count(id) + 1);
  }

  /** Drop a reference; unmount at zero. */
  async release(id: string, target: string): Promise<void> {
    const n = this.count(id);
    if (n > 1) {
      this.#refs.set(id, n - 1);
      return;
    }
    if (n === 1) await this.drop(id, target);
  }

  /** Unmount whatever the count (Remove, Cleanup). */
  async drop(id: string, target: string): Promise<void> {
    this.#refs.delete(id);
    if (unmount(this.#sys, target) === "detached") this.#log.warn("image was busy: detached its mount", { id });
    await fs.rmdir(target).catch(() => {});
  }

  /** The IDs with mounted images. */
  ids(): string[] {
    return [...this.#refs.keys()];
  }
}
