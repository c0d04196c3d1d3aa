/**
 * Smoke test of the btrfs ioctls through the Deno `Sys` adapter (bun:test cannot load
 * `Deno.dlopen`): `node_modules/.bin/deno run -A test/sys-btrfs-deno-smoke.ts` as root, with
 * btrfs-progs installed. Formats a sparse image, loop-mounts it, calls every btrfs method once,
 * unmounts; the exit code is non-zero on any mismatch.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ErrnoError } from "../src/core/errors.ts";
import { createSys } from "../src/sys/deno.ts";
import { fsName } from "../src/sys/fs-magic.ts";
import { MNT } from "../src/sys/types.ts";
import { smoke } from "./helpers/smoke-tally.ts";

const tally = smoke();
const check = tally.check;

const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
};

const sys = createSys();
const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-btrfs-deno-"));
const image = path.join(root, "fs.img");
const mnt = path.join(root, "mnt");
fs.mkdirSync(mnt);
fs.writeFileSync(image, "");
fs.truncateSync(image, 512 * 2 ** 20);
let mounted = false;
try {
  run("mkfs.btrfs", ["-q", "-f", image]);
  const loop = sys.loopAttach(image);
  try {
    sys.mount(loop.device, mnt, "btrfs", 0, "");
    mounted = true;
  } finally {
    sys.close(loop.fd);
  }
  run("btrfs", ["quota", "enable", mnt]);
  check("statfs says btrfs", () => fsName(sys.statfs(mnt).type) === "btrfs");

  sys.btrfsSubvolCreate(mnt, "a");
  fs.writeFileSync(path.join(mnt, "a", "f"), "hello");
  check("subvolume create", () => sys.lstat(path.join(mnt, "a")).ino === 256n);
  sys.btrfsSnapshot(path.join(mnt, "a"), mnt, "ro", true);
  check("read-only snapshot", () => sys.btrfsIsReadonly(path.join(mnt, "ro")) && fs.readFileSync(path.join(mnt, "ro", "f"), "utf8") === "hello");
  sys.btrfsSetReadonly(path.join(mnt, "ro"), false);
  check("set flags", () => sys.btrfsIsReadonly(path.join(mnt, "ro")) === false);
  const id = sys.btrfsSubvolId(path.join(mnt, "a"));
  check("subvolume id", () => run("btrfs", ["subvolume", "list", mnt]).includes(`ID ${id} gen`));
  check("fs info", () => run("btrfs", ["filesystem", "show", mnt]).includes(sys.btrfsFsInfo(mnt).fsid));
  check("quota status", () => sys.btrfsQuotaStatus(mnt)?.enabled === true);
  sys.btrfsQgroupLimit(path.join(mnt, "a"), 64n << 20n);
  check("qgroup limit", () => sys.btrfsQgroup(mnt, id)?.maxReferenced === 64n << 20n);
  sys.btrfsSubvolCreate(path.join(mnt, "a"), "inner");
  check("destroy with a nested subvolume is ENOTEMPTY", () => {
    try {
      sys.btrfsSubvolDestroy(mnt, "a");
      return "nothing thrown";
    } catch (err) {
      return err instanceof ErrnoError && err.code === "ENOTEMPTY";
    }
  });
  check("fd variants", () => {
    const dirFd = sys.openDir(path.join(mnt, "a"));
    const innerFd = sys.openDir(path.join(mnt, "a", "inner"));
    try {
      sys.btrfsSetReadonlyFd(innerFd, true);
      const ro = sys.btrfsIsReadonly(path.join(mnt, "a", "inner"));
      sys.btrfsSetReadonlyFd(innerFd, false);
      return sys.btrfsSubvolIdFd(dirFd) === id && sys.btrfsSubvolIdFd(innerFd) !== id && ro;
    } finally {
      sys.close(innerFd);
      sys.close(dirFd);
    }
  });
  const aFd = sys.openDir(path.join(mnt, "a"));
  try {
    sys.btrfsSubvolDestroyAt(aFd, "inner");
  } finally {
    sys.close(aFd);
  }
  sys.btrfsSubvolDestroy(mnt, "a");
  sys.btrfsSubvolDestroyById(mnt, sys.btrfsSubvolId(path.join(mnt, "ro")));
  check("destroy, by name and by id", () => !fs.existsSync(path.join(mnt, "a")) && !fs.existsSync(path.join(mnt, "ro")));
  check("qgroup destroy answers through the ioctl", () => {
    try {
      sys.btrfsQgroupDestroy(mnt, id);
      return true;
    } catch (err) {
      return err instanceof ErrnoError && (err.code === "EBUSY" || err.code === "ENOENT");
    }
  });
} catch (err) {
  tally.fail("setup", err);
} finally {
  if (mounted) sys.umount2(mnt, MNT.DETACH);
  fs.rmSync(root, { recursive: true, force: true });
}

tally.finish();
