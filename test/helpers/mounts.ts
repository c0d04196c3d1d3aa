/** Test helpers: what this process's mount table holds under a directory, and a teardown that empties it. */
import * as fs from "node:fs";
import { type MountInfo, mountsUnder, parseMountInfo } from "../../src/mount/mountinfo.ts";
import { MNT, type Sys } from "../../src/sys/types.ts";

/** Mounts strictly under `dir`, deepest first (escapes decoded; `dir` resolved, as the kernel lists real paths). */
export function mountsBelow(dir: string): MountInfo[] {
  const real = fs.existsSync(dir) ? fs.realpathSync(dir) : dir;
  return mountsUnder(parseMountInfo(fs.readFileSync("/proc/self/mountinfo", "utf8")), real);
}

/** Lazily unmount everything under `dir`, deepest first: a test's teardown, whatever the test left. */
export function unmountBelow(sys: Sys, dir: string): void {
  for (const m of mountsBelow(dir)) {
    try {
      sys.umount2(m.mountPoint, MNT.DETACH);
    } catch {
      // Already gone with a parent's lazy unmount.
    }
  }
}
