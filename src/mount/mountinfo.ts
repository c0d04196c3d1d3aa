/** `/proc/self/mountinfo`, parsed: what is mounted where, so stale mounts under Home can be found. */
import * as fs from "node:fs/promises";

/** One line of mountinfo (proc(5)). */
export interface MountInfo {
  id: number;
  parentId: number;
  /** Path of the mount point, octal escapes (\040 …) decoded. */
  mountPoint: string;
  fsType: string;
  source: string;
  /** Per-superblock options ("rw,lowerdir=…"). */
  superOptions: string;
}

/** Undo the kernel's octal escapes of space, tab, newline and backslash. */
function _unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Parse mountinfo text; malformed lines are skipped.
 * @example
 * parseMountInfo("36 35 98:0 / /mnt rw - overlay overlay rw,lowerdir=/a\n")[0].fsType; // "overlay"
 */
export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const sep = fields.indexOf("-", 6);
    if (sep < 0 || fields.length < sep + 3) continue;
    out.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      mountPoint: _unescape(fields[4]),
      fsType: fields[sep + 1],
      source: _unescape(fields[sep + 2]),
      superOptions: fields[sep + 3] ?? "",
    });
  }
  return out;
}

/**
 * Mount points strictly under `dir`, deepest first (the order to unmount them in).
 * @example
 * mountsUnder(parseMountInfo(text), "/var/lib/docker/strata");
 */
export function mountsUnder(mounts: readonly MountInfo[], dir: string): MountInfo[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  return mounts
    .filter((m) => m.mountPoint.startsWith(prefix))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length || b.id - a.id);
}

/** Read and parse this process's mount table. */
export async function readMountInfo(): Promise<MountInfo[]> {
  return parseMountInfo(await fs.readFile("/proc/self/mountinfo", "utf8"));
}
