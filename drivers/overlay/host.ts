/**
 * What the host offers the overlay driver, found once at Init the way overlay2 finds it: is there
 * an overlay filesystem, can the backing filesystem carry it, does it fill in d_type, may the upper
 * dir be read as a diff, and which way mounts get their options.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { ErrIncompatibleFS, ErrNotSupported, hasCode } from "../../src/core/errors.ts";
import { fsName } from "../../src/sys/fs-magic.ts";
import { DT, type Sys } from "../../src/sys/types.ts";
import type { MountMethod, MountSpec } from "./mount-spec.ts";
import { mountSpec, unmount } from "../../src/mount/mounter.ts";

/** Everything Init learned about the host. */
export interface HostFeatures {
  /** `docker info`'s "Backing Filesystem". */
  backingFs: string;
  /** Whether readdir reports entry types (it does, or Init failed). */
  dType: boolean;
  /** How layers are mounted. */
  method: MountMethod;
  /** Whether Diff/Changes/DiffSize/ApplyDiff may work on the upper dir alone. */
  nativeDiff: boolean;
  /** Why not, when not. */
  naiveReason?: string;
  /** overlay's metacopy is on (only metadata is copied up). */
  metacopy: boolean;
  /** In a user namespace overlay wants "userxattr" (and user.overlay.* attributes). */
  userxattr: boolean;
  /** The kernel knows overlay's "index" option: pass index=off as overlay2 does. */
  indexOff: boolean;
  /** Bytes mount(2) data may take, plus one. */
  pageSize: number;
}

/** Filesystems overlay cannot use as its upper layer; moby's overlay2 refused the same list. */
const INCOMPATIBLE_FS = new Set(["aufs", "ecryptfs", "nfs", "overlayfs", "zfs"]);

/** overlay's module parameters, as files. */
export const OVERLAY_PARAMS = "/sys/module/overlay/parameters";

/**
 * Whether the kernel lists overlay in /proc/filesystems. A module that is not loaded yet is not
 * listed, but the kernel loads it on the first mount, so a false here is followed by a probe mount.
 */
export async function overlayListed(): Promise<boolean> {
  const text = await fs.readFile("/proc/filesystems", "utf8").catch(() => "");
  return text.split("\n").some((line) => line.split("\t").at(-1) === "overlay");
}

async function _param(name: string, dir = OVERLAY_PARAMS): Promise<string | null> {
  try {
    return (await fs.readFile(path.join(dir, name), "utf8")).trim();
  } catch (err) {
    if (hasCode(err, "ENOENT")) return null;
    throw err;
  }
}

/** True when this process runs in a user namespace other than the initial one. */
export async function inUserNamespace(): Promise<boolean> {
  const map = await fs.readFile("/proc/self/uid_map", "utf8").catch(() => "");
  const fields = map.trim().split(/\s+/);
  return !(fields.length === 3 && fields[0] === "0" && fields[1] === "0" && fields[2] === "4294967295");
}

/** The page size from the aux vector (AT_PAGESZ); 4096 when it cannot be read. */
export async function pageSize(): Promise<number> {
  const AT_PAGESZ = 6n;
  try {
    const auxv = await fs.readFile("/proc/self/auxv");
    const view = new DataView(auxv.buffer, auxv.byteOffset, auxv.byteLength);
    for (let at = 0; at + 16 <= auxv.byteLength; at += 16) {
      if (view.getBigUint64(at, true) === AT_PAGESZ) return Number(view.getBigUint64(at + 8, true));
    }
  } catch {
    // Fall through: every Linux architecture strata runs on has at least 4 KiB pages.
  }
  return 4096;
}

/**
 * Whether native diff is safe: overlay must not record renamed directories as redirects, nor copy
 * up metadata only, or the upper dir stops being a complete diff. Returns the reason when unsafe.
 */
export async function nativeDiffProblem(paramsDir = OVERLAY_PARAMS): Promise<string | null> {
  if ((await _param("redirect_dir", paramsDir)) === "Y") return "overlay's redirect_dir is on";
  if ((await _param("metacopy", paramsDir)) === "Y") return "overlay's metacopy is on";
  return null;
}

/** The message moby gives for a backing filesystem without d_type. */
export function dTypeMessage(backingFs: string): string {
  let msg = `overlay: the backing ${backingFs} filesystem is formatted without d_type support, which leads to incorrect behavior.`;
  if (backingFs === "xfs") msg += " Reformat the filesystem with ftype=1 to enable d_type support.";
  if (backingFs === "extfs") msg += " Reformat the filesystem (or use tune2fs) with -O filetype flag to enable d_type support.";
  return `${msg} Backing filesystems without d_type support are not supported.`;
}

/**
 * Try an overlay mount of two lowers, an upper and a workdir in `dir`; unmounts it again. The paths
 * are relative to `dir`, as layer mounts under such a Home are: a Home holding `:` or `,` cannot be
 * named in mount(2)'s data, and an absolute probe would fail the method the layers can use.
 */
function _probe(sys: Sys, dir: string, method: MountMethod, extra: string[]): void {
  const lowers = method === "fsconfig" ? ["lowerdir+=lower2", "lowerdir+=lower1"] : ["lowerdir=lower2:lower1"];
  const spec: MountSpec = { type: "overlay", source: "overlay", options: [...extra, ...lowers, "upperdir=upper", "workdir=work"], cwd: dir };
  mountSpec(sys, spec, path.join(dir, "merged"), "a test overlay");
  unmount(sys, path.join(dir, "merged"));
}

/**
 * Check the host and learn its features, in `probeDir` (an empty directory on Home's filesystem).
 * Throws ErrIncompatibleFS / ErrNotSupported as overlay2's Init does.
 * @example
 * const features = await detectHost(sys, "/var/lib/docker/strata/.tmp/check-1", { method: "auto" });
 */
export async function detectHost(sys: Sys, probeDir: string, want: { method: MountMethod | "auto"; nativeDiff: boolean }): Promise<HostFeatures> {
  const backingFs = fsName(sys.statfs(probeDir).type);
  if (INCOMPATIBLE_FS.has(backingFs)) {
    throw new ErrIncompatibleFS(`The overlay driver cannot keep layers on ${backingFs} ("${probeDir}"): overlay does not support it as an upper layer`);
  }
  for (const d of ["lower1", "lower2", "upper", "work", "merged"]) await fs.mkdir(path.join(probeDir, d));
  await fs.writeFile(path.join(probeDir, "lower1", "file"), "");

  const dType = sys.readdirTypes(path.join(probeDir, "lower1")).every((e) => e.type !== DT.UNKNOWN);
  if (!dType) throw new ErrNotSupported(dTypeMessage(backingFs));

  const listed = await overlayListed();
  const indexOff = (await _param("index")) !== null;
  const userxattr = await inUserNamespace();
  const extra = [...(indexOff ? ["index=off"] : []), ...(userxattr ? ["userxattr"] : [])];

  let method: MountMethod | undefined;
  const failures: string[] = [];
  for (const candidate of want.method === "auto" ? (["fsconfig", "mount"] as const) : [want.method]) {
    try {
      _probe(sys, probeDir, candidate, extra);
      method = candidate;
      break;
    } catch (err) {
      failures.push(`${candidate}: ${(err as Error).message}`);
    }
  }
  if (method === undefined) {
    const why = listed ? "overlay is listed in /proc/filesystems but a test mount failed" : "the kernel has no overlay filesystem";
    throw new ErrNotSupported(`The overlay driver cannot run: ${why} (${failures.join("; ")})`);
  }

  const problem = await nativeDiffProblem();
  const naiveReason = !want.nativeDiff
    ? "native diff is turned off by strata.native_diff=false"
    : problem ?? (userxattr ? "whiteouts in a user namespace are user.overlay.* attributes" : undefined);
  return {
    backingFs,
    dType,
    method,
    nativeDiff: naiveReason === undefined,
    naiveReason,
    metacopy: (await _param("metacopy")) === "Y",
    userxattr,
    indexOff,
    pageSize: await pageSize(),
  };
}
