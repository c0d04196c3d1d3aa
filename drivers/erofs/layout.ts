/**
 * The erofs driver's on-disk layout. Every name of ours starts with "." or lives inside a layer's
 * own directory, so no layer ID can collide with it. The image sits in the layer's directory, not
 * in a shared `layers/` one, because a layer ID may be 255 characters long: `<id>.erofs` would not
 * fit NAME_MAX.
 *
 * ```
 * Home/<id>/parent        the parent's ID ("" for a base layer); written last: the layer exists once it does
 * Home/<id>/rw            present for read-write (container) layers
 * Home/<id>/pending       present for an image layer not applied yet: writable like a container's
 *                         (BuildKit Gets layers it made with Create and writes into them) until
 *                         ApplyDiff turns it into an image
 * Home/<id>/diff/ work/   the overlay upper and work dirs of both
 * Home/<id>/layer.erofs   an image layer's files, once ApplyDiff (or Commit) wrote them
 * Home/<id>/layer.tar     the tar ApplyDiff received, byte for byte: Diff returns it (exact diffs)
 * Home/<id>/size          ApplyDiff's answer, for DiffSize without a walk
 * Home/<id>/image/        where layer.erofs is mounted while any layer above uses it
 * Home/<id>/merged/       where the layer's view (an overlay of its chain) is mounted on Get
 * Home/.tmp/              layers and images being built or deleted; emptied at start
 * Home/.l/<HASH>          short symlinks to `../<id>/image` or `../<id>/diff`, for overlay mounts whose
 *                         absolute paths exceed what fsconfig(2) takes (255 bytes: a long Home, a long ID)
 * ```
 */
import * as path from "node:path";
import { assertLayerId } from "../../src/core/layer-id.ts";

/** Short links under Home. */
export const LINK_DIR = ".l";
/** Temp dir under Home. */
export const TMP_DIR = ".tmp";
/** The parent file: a layer exists once it does. */
export const PARENT_FILE = "parent";
/** The read-write marker. */
export const RW_FILE = "rw";
/** The marker of an image layer that has no image yet. */
export const PENDING_FILE = "pending";
/** A read-write layer's upper dir. */
export const DIFF_DIR = "diff";
/** overlay's workdir. */
export const WORK_DIR = "work";
/** An image layer's image. */
export const IMAGE_FILE = "layer.erofs";
/** An image layer's original tar. */
export const TAR_FILE = "layer.tar";
/** ApplyDiff's size. */
export const SIZE_FILE = "size";
/** The image's mount point. */
export const IMAGE_DIR = "image";
/** The view's mount point. */
export const MERGED_DIR = "merged";

/** The prefixes of `.tmp/`'s entries: a layer built, an ApplyDiff, a Commit, a removal, Init's mount probe. */
export const STAGING = { create: "new-", apply: "apply-", commit: "commit-", remove: "rm-", probe: "check-" } as const;

/** Paths under Home. */
export class Layout {
  constructor(readonly home: string) {}

  /** The layer's directory; validates the ID. */
  layer(id: string): string {
    assertLayerId(id);
    return path.join(this.home, id);
  }
  /** A file or directory of the layer. */
  of(id: string, name: string): string {
    return path.join(this.layer(id), name);
  }
  /** The short-link dir. */
  get linkDir(): string {
    return path.join(this.home, LINK_DIR);
  }
  /** The temp dir. */
  get tmpDir(): string {
    return path.join(this.home, TMP_DIR);
  }
}
