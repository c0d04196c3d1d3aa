/** Perform and undo the mounts `spec.ts` describes. */
import * as process from "node:process";
import { ErrnoError, StrataError, hasCode } from "../core/errors.ts";
import { MNT, type Sys } from "../sys/types.ts";
import { type MountSpec, mountData, needsFsconfig, splitOption } from "./spec.ts";

/**
 * Mount `spec` at `target`: through the new mount API when the spec needs it (`lowerdir+`), else
 * one mount(2) call. Throws a StrataError naming `what`, with the kernel's own reason when it gave one.
 * @example
 * mountSpec(sys, layerMount({ ... }), "/var/lib/docker/strata/abc/merged", 'layer "abc"');
 */
export function mountSpec(sys: Sys, spec: MountSpec, target: string, what = `an overlay at "${target}"`): void {
  try {
    if (needsFsconfig(spec)) _mountNew(sys, spec, target);
    else _mountLegacy(sys, spec, target);
  } catch (err) {
    const kernel = (err as { kernelLog?: string[] }).kernelLog?.join("; ");
    const reason = err instanceof Error ? err.message : String(err);
    throw new StrataError(`Cannot mount ${what}: ${kernel ? `${kernel} (${reason})` : reason}`, { cause: err });
  }
}

function _mountNew(sys: Sys, spec: MountSpec, target: string): void {
  const fsfd = sys.fsopen(spec.type);
  try {
    // Relative paths resolve against the working directory while fsconfig parses them (see
    // _mountLegacy for why the process-wide change of directory is safe here).
    const previous = spec.cwd === undefined ? undefined : process.cwd();
    try {
      if (spec.cwd !== undefined) process.chdir(spec.cwd);
      for (const option of spec.options) {
        const [key, value] = splitOption(option);
        sys.fsconfig(fsfd, key, value);
      }
      sys.fsconfigCreate(fsfd);
    } catch (err) {
      // The kernel explains most EINVALs ("too many lower directories, limit is 500") in the context's log.
      if (err instanceof ErrnoError) Object.assign(err, { kernelLog: _safeLog(sys, fsfd) });
      throw err;
    } finally {
      if (previous !== undefined) process.chdir(previous);
    }
    const mfd = sys.fsmount(fsfd, 0);
    try {
      sys.moveMount(mfd, target);
    } finally {
      sys.close(mfd);
    }
  } finally {
    sys.close(fsfd);
  }
}

function _safeLog(sys: Sys, fd: number): string[] {
  try {
    return sys.fsLog(fd).map((m) => m.replace(/^[ewi] /, ""));
  } catch {
    return [];
  }
}

function _mountLegacy(sys: Sys, spec: MountSpec, target: string): void {
  const data = mountData(spec);
  if (spec.cwd === undefined) {
    sys.mount(spec.source, target, spec.type, 0, data);
    return;
  }
  // The short form names lower layers relative to Home, and the kernel resolves them against the
  // working directory of the calling thread. The change of directory below is process-wide, but
  // it is bracketed by synchronous calls with no await in between, so no other JS runs meanwhile,
  // and every path strata hands to the runtime's worker threads is absolute.
  const previous = process.cwd();
  process.chdir(spec.cwd);
  try {
    sys.mount(spec.source, target, spec.type, 0, data);
  } finally {
    process.chdir(previous);
  }
}

/** How `unmount` got rid of a mount. */
export type UnmountResult = "unmounted" | "detached" | "not-mounted";

/**
 * Unmount `target`; when it is busy, detach it lazily (the kernel finishes once the last user
 * leaves). A target that is not mounted is not an error.
 * @example
 * unmount(sys, "/var/lib/docker/strata/abc/merged"); // "unmounted"
 */
export function unmount(sys: Sys, target: string): UnmountResult {
  try {
    // NOFOLLOW: a symlink planted as a mount point is not followed to unmount whatever it names.
    sys.umount2(target, MNT.NOFOLLOW);
    return "unmounted";
  } catch (err) {
    if (hasCode(err, "EINVAL", "ENOENT")) return "not-mounted";
    if (!hasCode(err, "EBUSY")) throw err;
  }
  sys.umount2(target, MNT.DETACH | MNT.NOFOLLOW);
  return "detached";
}
