/**
 * The two whiteout formats, in one place: AUFS-style names in layer tars (`.wh.NAME`,
 * `.wh..wh..opq`), and overlayfs's on disk (a 0/0 character device, `trusted.overlay.opaque=y`),
 * plus which attributes belong to overlay itself and never travel in a layer.
 */
import type { Stat, Sys } from "../sys/types.ts";

/** The AUFS whiteout prefix: `.wh.NAME` deletes NAME from the layers below. */
export const WHITEOUT_PREFIX = ".wh.";
/** AUFS's own metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): never extracted. */
export const WHITEOUT_META_PREFIX = ".wh..wh.";
/** The AUFS opaque marker: the directory holding it hides everything below it. */
export const WHITEOUT_OPAQUE = ".wh..wh..opq";
/** The xattr overlayfs reads to treat a directory as opaque (trusted.* for root; user.* with userxattr). */
export const OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque";

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFCHR = 0o020000;

/**
 * Whether an xattr is overlayfs's own (redirects, origins, metacopy, opaque): they describe the
 * layer that made them and steer how overlay resolves paths, so no layer tar carries them in or out.
 * @example
 * isOverlayXattr("trusted.overlay.redirect"); // true
 * isOverlayXattr("security.capability");      // false
 */
export function isOverlayXattr(name: string): boolean {
  return name.startsWith("trusted.overlay.") || name.startsWith("user.overlay.");
}

/** Whether `st` is a directory. */
export function isDir(st: Stat): boolean {
  return (st.mode & S_IFMT) === S_IFDIR;
}

/** Whether `st` is an overlay whiteout: a character device 0/0. */
export function isWhiteout(st: Stat): boolean {
  return (st.mode & S_IFMT) === S_IFCHR && st.rdevMajor === 0 && st.rdevMinor === 0;
}

/** Whether the directory at `abs` is marked opaque. */
export function isOpaque(sys: Sys, abs: string, xattr = OVERLAY_OPAQUE_XATTR): boolean {
  const v = sys.lgetxattr(abs, xattr);
  return v !== null && v.length === 1 && v[0] === 0x79; // "y"
}
