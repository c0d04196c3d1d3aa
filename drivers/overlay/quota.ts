/**
 * Size limits for container layers on any backing filesystem. overlay2 needs xfs with project
 * quotas; strata instead gives a size-limited layer its own ext4 filesystem in a sparse image file
 * (`.quota/<id>.img`), attached to a loop device and mounted on the layer's directory, so the
 * upper and work dirs (and everything else of the layer) live inside it and writes past the size
 * fail with ENOSPC. Images are sparse and mounted with `discard`, so they take the space the layer
 * uses, not its limit. Loop devices are attached with autoclear and detach when unmounted.
 *
 * Formatting runs `mkfs.ext4` (e2fsprogs), once per size-limited layer: a fixed argument list, no
 * shell, never on the path of Get/Put/Diff. Mounting and loop setup go through `src/sys`.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs/promises";
import { accessSync, constants } from "node:fs";
import { InvalidRequestError, StrataError } from "../../src/core/errors.ts";
import type { Logger } from "../../src/core/log.ts";
import type { Sys } from "../../src/sys/types.ts";
import { unmount, type UnmountResult } from "../../src/mount/mounter.ts";

export { parseSize } from "../../src/core/size-units.ts";

export { MIN_SIZE } from "../../src/core/size-units.ts";
import { MIN_SIZE } from "../../src/core/size-units.ts";
/** Where `mkfs.ext4` is looked for; a plugin's PATH may lack the sbin dirs. */
const MKFS_CANDIDATES = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "/usr/bin/mkfs.ext4", "/bin/mkfs.ext4"];
/** The filesystem inside an image. */
const FS_TYPE = "ext4";
/** `discard` hands freed blocks back to the image file as holes, so deleting files frees host space. */
const MOUNT_DATA = "discard";

/**
 * Check a parsed limit against what an image can hold.
 * @example
 * checkSize("abc", parseSize("1G")); // 1073741824
 */
export function checkSize(id: string, bytes: number): number {
  if (bytes < MIN_SIZE) {
    throw new InvalidRequestError(`Cannot create layer "${id}": size ${bytes} is below the minimum of ${MIN_SIZE / 2 ** 20} MiB`);
  }
  return bytes;
}

/** The path of `mkfs.ext4`, or null when e2fsprogs is not installed. */
export function findMkfs(): string | null {
  for (const candidate of MKFS_CANDIDATES) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next
    }
  }
  return null;
}

/** Makes, mounts and unmounts layer images. */
export class QuotaImages {
  #sys: Sys;
  #log: Logger;
  #mkfs: string | null;

  constructor(sys: Sys, log: Logger, mkfs: string | null) {
    this.#sys = sys;
    this.#log = log;
    this.#mkfs = mkfs;
  }

  /** Why size limits cannot work here, or null when they can. */
  get unavailableReason(): string | null {
    return this.#mkfs === null ? "mkfs.ext4 (e2fsprogs) is not installed" : null;
  }

  /** Create `image` as a sparse file of `bytes` holding an empty ext4 filesystem. */
  async format(image: string, bytes: number): Promise<void> {
    const mkfs = this.#mkfs;
    if (mkfs === null) throw new StrataError(`Cannot make a size-limited layer: ${this.unavailableReason}`);
    const handle = await fs.open(image, "wx", 0o600);
    try {
      await handle.truncate(bytes);
    } finally {
      await handle.close();
    }
    // -m 0: no blocks reserved for root, the container gets the whole size. -F: it is a file, not a
    // device. A fresh sparse file reads as zeros, so neither the journal nor the inode tables need
    // zeroing: lazy init keeps a 2G image at ~1 MiB on disk instead of ~65 MiB.
    const args = ["-q", "-F", "-t", FS_TYPE, "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-L", "strata", image];
    await new Promise<void>((resolve, reject) => {
      execFile(mkfs, args, { timeout: 120_000 }, (err, _stdout, stderr) => {
        if (err) reject(new StrataError(`Cannot format a layer image: mkfs.ext4 failed: ${String(stderr).trim() || err.message}`));
        else resolve();
      });
    });
  }

  /** Attach `image` to a loop device and mount it on `target` (an existing directory). */
  mount(image: string, target: string): void {
    const loop = this.#sys.loopAttach(image);
    try {
      this.#sys.mount(loop.device, target, FS_TYPE, 0, MOUNT_DATA);
    } finally {
      // Once mounted the mount holds the device; unmounted, autoclear detaches it when this fd closes.
      this.#sys.close(loop.fd);
    }
  }

  /** Unmount an image's filesystem (lazily when busy); its loop device then detaches itself. */
  unmount(target: string): UnmountResult {
    const how = unmount(this.#sys, target);
    if (how === "detached") this.#log.warn("a layer filesystem was busy: detached it", { path: target });
    return how;
  }
}

/** Whether `path` exists (any type). */
export async function pathExists(path: string): Promise<boolean> {
  return await fs.lstat(path).then(() => true, () => false);
}
