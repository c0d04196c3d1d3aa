/**
 * Fixtures of the EROFS writer tests: every image a test writes is checked by `fsck.erofs`
 * (erofs-utils, `scripts/install-test-deps.sh`) and mounted by the kernel, file-backed.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { applyLayer } from "../../src/archive/apply.ts";
import type { IdMap } from "../../src/core/driver.ts";
import { writeImageFromTar, type FromTarOptions } from "../../src/erofs/from-tar.ts";
import { MNT, MS, type Sys } from "../../src/sys/types.ts";
import { makeTar, streamOf } from "../helpers/layer-tar.ts";
import { type NodeInfo, snapshot } from "../helpers/tree.ts";
import { type Item, isRoot, sys, tempRoot } from "../archive/layer-fixtures.ts";

/** fsck.erofs is installed. */
export const hasFsck = spawnSync("fsck.erofs", ["-V"]).status === 0;

/** The kernel mounts an EROFS image from a plain file (Linux 6.12 with EROFS_FS_BACKED_BY_FILE). */
export const canMountErofs: boolean = (() => {
  if (!isRoot || !fs.readFileSync("/proc/filesystems", "utf8").includes("\terofs\n")) return false;
  return true;
})();

/** Why the kernel checks are skipped, when they are. */
export const SKIP_REASON = !isRoot ? "mounting needs root" : !canMountErofs ? "the kernel has no erofs" : !hasFsck ? "fsck.erofs is missing (scripts/install-test-deps.sh)" : "";

/** Run `fsck.erofs --extract` (reads every file's data too); throws with its output on failure. */
export function fsck(image: string): void {
  const r = spawnSync("fsck.erofs", ["--extract", image], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`fsck.erofs ${image} failed (${r.status}): ${r.stdout}${r.stderr}`);
}

/** Mount `image` read-only at a fresh directory, run `fn` on it, unmount. */
export async function withMounted<T>(s: Sys, image: string, fn: (dir: string) => T | Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(path.dirname(image), "mnt-"));
  s.mount(image, dir, "erofs", MS.RDONLY | MS.NODEV | MS.NOSUID, "");
  try {
    return await fn(dir);
  } finally {
    s.umount2(dir, MNT.DETACH);
    fs.rmdirSync(dir);
  }
}

/** fsck, mount and snapshot an image (directory mtimes included). */
export async function imageSnapshot(image: string): Promise<Record<string, NodeInfo>> {
  fsck(image);
  return await withMounted(sys, image, (dir) => snapshot(dir, sys, { dirMtimes: true }));
}

/** Write `tar` to a fresh image; returns its path. */
export async function imageOf(tar: Uint8Array, opts: FromTarOptions = {}, chunk?: number): Promise<string> {
  const image = path.join(tempRoot("strata-erofs-"), "layer.erofs");
  await writeImageFromTar(streamOf(tar, chunk), image, opts);
  return image;
}

/** What the directory apply makes of `tar` (overlay whiteouts), snapshotted: the reference the image must equal. */
export async function appliedSnapshot(tar: Uint8Array, maps: { uidMaps?: IdMap[]; gidMaps?: IdMap[] } = {}): Promise<Record<string, NodeInfo>> {
  const dir = path.join(tempRoot("strata-erofs-ref-"), "layer");
  fs.mkdirSync(dir, { mode: 0o755 });
  await applyLayer(dir, streamOf(tar), { sys, whiteouts: "overlay", ...maps });
  return snapshot(dir, sys, { dirMtimes: true });
}

/**
 * Drop the times the apply makes up: of directories the tar does not list (the root, implied
 * parents) and of whiteouts (0/0 devices), which get the time of the apply; the image gives them
 * its build time and the whiteout entry's time. Listed directories keep theirs.
 */
export function withoutMadeUpTimes(snap: Record<string, NodeInfo>, listed: Set<string>): Record<string, NodeInfo> {
  const out: Record<string, NodeInfo> = {};
  for (const [p, info] of Object.entries(snap)) {
    const madeUp = (info.type === "dir" && !listed.has(p)) || (info.type === "char" && info.rdev === 0);
    out[p] = madeUp ? { ...info, mtimeNs: undefined } : info;
  }
  return out;
}

/** The snapshot paths ("/a/b") of the directories `items` list, as the apply leaves them. */
export function listedDirs(items: Item[]): Set<string> {
  const out = new Set<string>();
  for (const item of items) {
    const h = Array.isArray(item) ? item[0] : item;
    if (h.type !== "directory") continue;
    const clean = h.name.split("/").filter((p) => p !== "" && p !== ".").join("/");
    out.add(`/${clean}`);
  }
  return out;
}

/** Both sides of the round trip for `items`: the mounted image's snapshot and the applied one. */
export async function roundTrip(items: Item[], opts: FromTarOptions = {}): Promise<{ image: Record<string, NodeInfo>; applied: Record<string, NodeInfo>; raw: Record<string, NodeInfo> }> {
  const tar = await makeTar(items);
  const listed = listedDirs(items);
  const raw = await imageSnapshot(await imageOf(tar, opts));
  const image = withoutMadeUpTimes(raw, listed);
  const applied = withoutMadeUpTimes(await appliedSnapshot(tar, opts), listed);
  return { image, applied, raw };
}
