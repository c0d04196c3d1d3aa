/**
 * What containerd's clients can mount: every one that performs snapshotter mounts (ctr, the shim,
 * dockerd 26) does so through containerd's mount package, which shortens long lower lists itself.
 * The snapshotter hands this to the driver's `mounts`, so the driver stays free of the protocol.
 */
import * as path from "node:path";
import type { MountFits } from "../core/driver.ts";

/**
 * How many bytes of mount(2) data `options` take once containerd's mount package has shortened
 * them: from 3584 bytes on it names the lower dirs relative to their common parent directory and
 * mounts from there (containerd 1.6/1.7, and so ctr, the shim and dockerd 26). Lower dirs under
 * one Home therefore cost a few bytes each (`123/diff`).
 * @example
 * compactedDataLength(["lowerdir=/h/12/diff:/h/3/diff", "upperdir=/h/4/diff"]); // 42 (of 48)
 */
export function compactedDataLength(options: readonly string[]): number {
  const at = options.findIndex((o) => o.startsWith("lowerdir="));
  const dirs = at < 0 ? [] : options[at]!.slice("lowerdir=".length).split(":");
  const full = options.join(",").length;
  if (dirs.length < 2) return full;
  let prefix = dirs[0]!;
  for (const d of dirs) while (!d.startsWith(prefix)) prefix = prefix.slice(0, -1);
  // Go's path.Dir: what precedes the last "/", cleaned ("/h/12" and "/h/" both give "/h").
  const common = path.posix.normalize(prefix.slice(0, prefix.lastIndexOf("/") + 1) || ".").replace(/(.)\/$/, "$1");
  if (common === "/" || common === ".") return full;
  return full - dirs.length * (common.length + 1);
}

/**
 * Whether containerd's mount package can perform `spec` with one mount(2) below `pageSize` bytes
 * (below 3584 bytes it does not shorten, but then the options fit as they are).
 */
export const fitsContainerdMount: MountFits = (spec, pageSize) => compactedDataLength(spec.options) < pageSize;
