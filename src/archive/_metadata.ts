/**
 * Putting an entry's metadata on disk in the one order that keeps all of it: owner first (chown
 * clears setuid/setgid and `security.capability`), then xattrs, then the mode, then the times.
 */
import * as fs from "node:fs";
import { hasCode } from "../core/errors.ts";
import type { Sys, Timespec } from "../sys/types.ts";

/** What `setMetadata` writes. */
export interface Metadata {
  uid: number;
  gid: number;
  /** Permission bits incl. setuid/setgid/sticky; ignored for symlinks (there is no lchmod). */
  mode: number;
  xattrs: Iterable<[string, Uint8Array]>;
  atime: Timespec;
  mtime: Timespec;
  /** The path is a symlink (or a hardlink to one): never chmod it, chmod would follow it. */
  symlink: boolean;
}

/**
 * Owner, xattrs, mode and times of `abs`, never following a symlink at `abs` itself.
 * With `bestEffortXattrs`, an EPERM from lsetxattr (user.* on a symlink, a restricted userns) is
 * ignored, as moby's createTarFile does; anything else throws.
 * @example
 * setMetadata(sys, "/l/etc/passwd", { uid: 0, gid: 0, mode: 0o644, xattrs: [], atime: t, mtime: t, symlink: false });
 */
export function setMetadata(sys: Sys, abs: string, meta: Metadata, bestEffortXattrs = false): void {
  sys.lchown(abs, meta.uid, meta.gid);
  for (const [name, value] of meta.xattrs) {
    try {
      sys.lsetxattr(abs, name, value);
    } catch (err) {
      if (!(bestEffortXattrs && hasCode(err, "EPERM"))) throw err;
    }
  }
  // Synchronous: a metadata syscall costs microseconds, a thread-pool round trip costs more.
  if (!meta.symlink) fs.chmodSync(abs, meta.mode & 0o7777);
  sys.lutimes(abs, meta.atime, meta.mtime);
}

/** `setMetadata` on an open regular file (no path resolved again; never a symlink). */
export function setMetadataFd(sys: Sys, fd: number, meta: Metadata, bestEffortXattrs = false): void {
  sys.fchown(fd, meta.uid, meta.gid);
  for (const [name, value] of meta.xattrs) {
    try {
      sys.fsetxattr(fd, name, value);
    } catch (err) {
      if (!(bestEffortXattrs && hasCode(err, "EPERM"))) throw err;
    }
  }
  sys.fchmod(fd, meta.mode & 0o7777);
  sys.futimes(fd, meta.atime, meta.mtime);
}

/** name → value of `names`; a value removed between list and get is simply gone. */
function _collect(names: string[], get: (name: string) => Uint8Array | null): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const name of names) {
    const value = get(name);
    if (value !== null) out.set(name, value);
  }
  return out;
}

/** All extended attributes of the file open as `fd`, name → raw value. */
export function readXattrsFd(sys: Sys, fd: number): Map<string, Uint8Array> {
  return _collect(sys.flistxattr(fd), (name) => sys.fgetxattr(fd, name));
}

/** All extended attributes of `abs` (not following a symlink), name → raw value. */
export function readXattrs(sys: Sys, abs: string): Map<string, Uint8Array> {
  return _collect(sys.llistxattr(abs), (name) => sys.lgetxattr(abs, name));
}

