/**
 * Test helpers: btrfs filesystems for the tests, each a sparse image file formatted with
 * mkfs.btrfs (btrfs-progs) and loop-mounted through strata's own `Sys` (the loop device has
 * autoclear, so it goes with the unmount). `btrfsTempRoot()` is the one filesystem of this test
 * process, mounted on first use and unmounted at exit; `mountBtrfs()` makes a private one (a
 * test that enables quotas). Images and mount points of processes that died without cleaning up
 * are removed at the next first use.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MNT, type Sys } from "../../src/sys/types.ts";
import { createSys } from "../../src/sys/bun.ts";

const sys: Sys = createSys();
/** What every image is called: `<tmpdir>/strata-btrfs-<pid>-<n>` (+ `.img`). */
const PREFIX = "strata-btrfs-";
/** Sparse, so it takes what the tests write; big enough for the load and deep-chain tests. */
const IMAGE_BYTES = 4 * 2 ** 30;
const MKFS = ["/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs", "/usr/bin/mkfs.btrfs"].find((p) => fs.existsSync(p)) ?? null;
const BTRFS = ["/usr/bin/btrfs", "/bin/btrfs", "/usr/sbin/btrfs"].find((p) => fs.existsSync(p)) ?? null;

/** Why btrfs filesystems cannot be made and mounted here, or null. */
export const btrfsUnavailable: string | null = (() => {
  if (process.getuid?.() !== 0) return "mounting a btrfs image needs root";
  if (MKFS === null || BTRFS === null) return "btrfs-progs (mkfs.btrfs, btrfs) is not installed";
  if (!fs.existsSync("/dev/loop-control")) return "this host has no loop devices (/dev/loop-control)";
  const known = fs.readFileSync("/proc/filesystems", "utf8").includes("\tbtrfs\n");
  if (!known && spawnSync("modprobe", ["btrfs"]).status !== 0) return "this kernel has no btrfs (not in /proc/filesystems, modprobe failed)";
  return null;
})();

/** A mounted btrfs image. */
export interface BtrfsMount {
  /** The mount point. */
  dir: string;
  /** Unmount it and delete the image and mount point. */
  close(): void;
}

let seq = 0;

/** Run btrfs-progs (tests only: strata itself never does); throws with its stderr on failure. */
export function btrfsProgs(args: string[]): string {
  const bin = args[0] === "mkfs" ? MKFS : BTRFS;
  const r = spawnSync(bin!, args[0] === "mkfs" ? args.slice(1) : args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${path.basename(bin!)} ${args.join(" ")}: ${r.stderr || r.error}`);
  return r.stdout;
}

/** Make, format and mount a fresh btrfs image; `quota` enables quotas on it. */
export function mountBtrfs(opts: { quota?: boolean; bytes?: number } = {}): BtrfsMount {
  if (btrfsUnavailable !== null) throw new Error(`Cannot make a btrfs filesystem: ${btrfsUnavailable}`);
  const dir = path.join(os.tmpdir(), `${PREFIX}${process.pid}-${++seq}`);
  const image = `${dir}.img`;
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.writeFileSync(image, "");
  fs.truncateSync(image, opts.bytes ?? IMAGE_BYTES);
  try {
    btrfsProgs(["mkfs", "-q", "-f", image]);
    const loop = sys.loopAttach(image);
    try {
      sys.mount(loop.device, dir, "btrfs", 0, "");
    } finally {
      sys.close(loop.fd);
    }
    if (opts.quota) btrfsProgs(["quota", "enable", dir]);
  } catch (err) {
    _remove(dir);
    throw err;
  }
  let closed = false;
  return {
    dir,
    close() {
      if (closed) return;
      closed = true;
      _remove(dir);
    },
  };
}

function _remove(dir: string): void {
  try {
    sys.umount2(dir, MNT.DETACH);
  } catch {
    // Not mounted (mkfs failed, or a crashed process's mount is already gone).
  }
  fs.rmSync(`${dir}.img`, { force: true });
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Remove the images of test processes that are gone. */
function _removeStale(): void {
  for (const name of fs.readdirSync(os.tmpdir())) {
    const m = /^strata-btrfs-(\d+)-\d+$/.exec(name);
    if (m === null || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch {
      _remove(path.join(os.tmpdir(), name));
    }
  }
}

let shared: BtrfsMount | null = null;

/**
 * The directory temp roots of btrfs tests go in: this process's btrfs filesystem, mounted the
 * first time it is asked for; `closeBtrfsTempRoot` (the global afterAll of `test/preload.ts`,
 * since bun test runs no exit handlers) unmounts it.
 */
export function btrfsTempRoot(): string {
  if (shared === null) {
    _removeStale();
    shared = mountBtrfs();
  }
  return shared.dir;
}

/** Unmount this process's btrfs test filesystem, if it was made. */
export function closeBtrfsTempRoot(): void {
  shared?.close();
  shared = null;
}

/**
 * Delete a test's temp root that holds subvolumes, read-only ones included (fs.rm cannot empty
 * those): every subvolume is made writable and destroyed deepest first, then the rest goes.
 */
export function removeBtrfsTree(root: string): void {
  if (!fs.existsSync(root)) return;
  const subvols: string[] = [];
  const walk = (dir: string) => {
    let entries;
    try {
      entries = sys.lreaddirTypes(dir);
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.type !== 4) continue;
      const p = path.join(dir, e.name);
      walk(p);
      if (sys.lstat(p).ino === 256n) subvols.push(p);
    }
  };
  walk(root);
  // The root itself may be a subvolume (a layer's own subvolume): it goes last.
  if (sys.lstat(root).ino === 256n) subvols.push(root);
  for (const p of subvols) {
    try {
      sys.btrfsSetReadonly(p, false);
    } catch {
      // The kernel refuses to clear it on a subvolume being sent; the destroy below still may work.
    }
  }
  // walk() lists children before their parents: destroy in that order.
  for (const p of subvols) sys.btrfsSubvolDestroy(path.dirname(p), path.basename(p));
  if (fs.existsSync(root)) fs.rmSync(root, { recursive: true, force: true });
}
