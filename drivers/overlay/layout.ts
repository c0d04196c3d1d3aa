/**
 * The overlay driver's on-disk layout, as moby's overlay2 lays it out under Home, except that the
 * link directory is `.l` rather than `l`: every name of ours starts with ".", which no layer ID
 * can, so no layer (not even one called "l") can collide with it.
 *
 * ```
 * Home/.l/<LINK>           symlink → ../<id>/diff   (short names keep mount options small)
 * Home/<id>/diff/          the layer's own files: the overlay upper dir
 * Home/<id>/work/          overlay's workdir (layers with a parent)
 * Home/<id>/merged/        where the layer is mounted (created on first Get)
 * Home/<id>/link           the layer's LINK name
 * Home/<id>/lower          ".l/A:.l/B:…", the parent's link first (layers with a parent)
 * Home/<id>/committed      present once a child was created on the layer
 * Home/.tmp/               layers being built or deleted; emptied at start
 * Home/.quota/<id>.img     a size-limited layer's filesystem image, mounted on Home/<id>/
 * ```
 * A layer exists once its `link` file does: a size-limited layer's files all live in its image,
 * so its directory is an empty mount point until the image is mounted there.
 * Pure path arithmetic and file formats; nothing here touches the disk.
 */
import * as path from "node:path";
import { StrataError } from "../../src/core/errors.ts";
import { assertLayerId } from "../../src/core/layer-id.ts";
import { entryPath, idName, maxIdFor } from "../../src/store/names.ts";

/** Holds the short-name symlinks (overlay2's `l`, with the dot that keeps it apart from layer IDs). */
export const LINK_DIR = ".l";
/** The upper dir of a layer. */
export const DIFF_DIR = "diff";
/** overlay's workdir. */
export const WORK_DIR = "work";
/** The mount point. */
export const MERGED_DIR = "merged";
/** The layer's short link name. */
export const LINK_FILE = "link";
/** The lower chain. */
export const LOWER_FILE = "lower";
/** Marks a layer with children: it is then mounted read-only, like overlay2 does. */
export const COMMITTED_FILE = "committed";
/** Temp dirs. Starts with "." so no layer ID (they start with a letter or digit) can collide. */
export const TMP_DIR = ".tmp";
/** Filesystem images of size-limited layers. */
export const QUOTA_DIR = ".quota";
/** A size-limited layer's image is `.quota/<id><IMAGE_SUFFIX>`. */
export const IMAGE_SUFFIX = ".img";
/** The longest ID a size-limited layer can have: its image's name must fit NAME_MAX. */
export const MAX_SIZED_ID = maxIdFor(IMAGE_SUFFIX);
/** overlay2's link name length: (26 + len(".l/") + 1) × 128 lowers, plus a 64-character ID's upper and work, fit a page. */
export const LINK_ID_LENGTH = 26;

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const LINK_ID_PATTERN = /^[A-Z2-7]{26}$/;

/**
 * Paths of everything under Home.
 * @example
 * const layout = new Layout("/var/lib/docker/strata");
 * layout.diff("abc"); // "/var/lib/docker/strata/abc/diff"
 */
export class Layout {
  constructor(readonly home: string) {}

  /** The layer's directory; validates the ID. */
  layer(id: string): string {
    assertLayerId(id);
    return path.join(this.home, id);
  }
  /** The upper dir. */
  diff(id: string): string {
    return path.join(this.layer(id), DIFF_DIR);
  }
  /** overlay's workdir. */
  work(id: string): string {
    return path.join(this.layer(id), WORK_DIR);
  }
  /** The mount point. */
  merged(id: string): string {
    return path.join(this.layer(id), MERGED_DIR);
  }
  /** The file holding the link name. */
  linkFile(id: string): string {
    return path.join(this.layer(id), LINK_FILE);
  }
  /** The file holding the lower chain. */
  lowerFile(id: string): string {
    return path.join(this.layer(id), LOWER_FILE);
  }
  /** The "has children" marker. */
  committedFile(id: string): string {
    return path.join(this.layer(id), COMMITTED_FILE);
  }
  /** The symlinks' directory. */
  get linkDir(): string {
    return path.join(this.home, LINK_DIR);
  }
  /** The symlink of a link name. */
  link(linkId: string): string {
    return entryPath(this.linkDir, linkId);
  }
  /** The temp dir. */
  get tmpDir(): string {
    return path.join(this.home, TMP_DIR);
  }
  /** The images' directory. */
  get quotaDir(): string {
    return path.join(this.home, QUOTA_DIR);
  }
  /**
   * A size-limited layer's filesystem image; null for an ID too long to have one (such a layer
   * cannot be created with a size limit, see `imageName`).
   */
  quotaImage(id: string): string | null {
    assertLayerId(id);
    return id.length > MAX_SIZED_ID ? null : entryPath(this.quotaDir, `${id}${IMAGE_SUFFIX}`);
  }
  /** A lower-file entry (".l/ABC…") as an absolute path (still a symlink to the diff dir). */
  absolute(entry: string): string {
    return path.join(this.home, entry);
  }
}

/** What `.l/<LINK>` points at, relative to `.l/`. */
export function linkTarget(id: string): string {
  return path.join("..", id, DIFF_DIR);
}

/** The layer ID a `.l/` symlink's target names, or null when the target is not of our form. */
export function idOfLinkTarget(target: string): string | null {
  const m = /^\.\.\/([^/]+)\/diff$/.exec(target);
  return m ? m[1] : null;
}

/**
 * A fresh random link name: 26 base32 characters, as overlay2 makes them.
 * @example
 * newLinkId(); // "T4QHMVZ3YB6OQNWZ2E4F5ARJXK"
 */
export function newLinkId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(LINK_ID_LENGTH));
  let out = "";
  for (const b of bytes) out += BASE32[b & 31];
  return out;
}

/** Whether `s` looks like a link name we made (guards what we read from disk before using it in a path). */
export function isLinkId(s: string): boolean {
  return LINK_ID_PATTERN.test(s);
}

/**
 * Parse a `lower` file: ".l/A:.l/B" → [".l/A", ".l/B"]. Throws on anything that is not a list of our links,
 * since its entries end up in mount options.
 * @example
 * parseLower(".l/AAAAAAAAAAAAAAAAAAAAAAAAAA"); // [".l/AAAAAAAAAAAAAAAAAAAAAAAAAA"]
 */
export function parseLower(text: string): string[] {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  const entries = trimmed.split(":");
  for (const e of entries) {
    if (!e.startsWith(`${LINK_DIR}/`) || !isLinkId(e.slice(LINK_DIR.length + 1))) {
      throw new StrataError(`Corrupt lower file: bad entry ${JSON.stringify(e.slice(0, 80))}`);
    }
  }
  return entries;
}

/** The text of a `lower` file. */
export function formatLower(entries: readonly string[]): string {
  return entries.join(":");
}

/** The lower chain of a child of a layer whose link is `parentLink` and whose own chain is `parentLowers`. */
export function childLowers(parentLink: string, parentLowers: readonly string[]): string[] {
  return [`${LINK_DIR}/${parentLink}`, ...parentLowers];
}

/**
 * The image name of a size-limited layer, or InvalidRequestError when `id` is too long for one:
 * checked before a sized create touches the disk.
 */
export function imageName(id: string): string {
  return idName(id, IMAGE_SUFFIX, `create layer "${id}" with a size limit`);
}
