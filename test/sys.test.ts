import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ErrnoError } from "../src/core/errors.ts";
import { makedev } from "../src/sys/_common.ts";
import { encodeLoopConfig } from "../src/sys/_loop.ts";
import { createSys } from "../src/sys/bun.ts";
import { backingFs, fsName } from "../src/sys/fs-magic.ts";
import { DT, MNT, MOUNT_ATTR, MS, O, RENAME } from "../src/sys/types.ts";
import { lowerdirPlusUnavailable } from "./helpers/overlay-probe.ts";

const sys = createSys();
// Linux 6.1 (Debian 12) has the new mount API but not overlay's lowerdir+ (6.8).
const noLowerdirPlus = process.getuid?.() === 0 ? await lowerdirPlusUnavailable(sys) : null;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
const TMPFS_MAGIC = 0x01021994;
const BTRFS_MAGIC = 0x9123683e;

const isRoot = process.getuid?.() === 0;
const hasMkfsBtrfs = spawnSync("sh", ["-c", "command -v mkfs.btrfs && command -v losetup"]).status === 0;
const hasBtrfs = fs.readFileSync("/proc/filesystems", "utf8").includes("\tbtrfs\n");

let root: string;
let cleanups: (() => void)[];

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-sys-"));
  cleanups = [];
});

afterEach(() => {
  for (const undo of cleanups.reverse()) {
    try {
      undo();
    } catch (err) {
      console.error("cleanup:", err);
    }
  }
  fs.rmSync(root, { recursive: true, force: true });
});

/** Mount a fresh tmpfs at `<root>/<name>`, unmounted after the test. */
function tmpfs(name: string, flags = 0, data = "size=1m"): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  sys.mount("tmpfs", dir, "tmpfs", flags, data);
  cleanups.push(() => sys.umount2(dir, MNT.DETACH));
  return dir;
}

/** The mount points in /proc/self/mountinfo with their per-mount options. */
function mountOptions(dir: string): string | undefined {
  const line = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[4] === dir);
  return line?.split(" ")[5];
}

/** Run `fn` and return what it threw. */
function thrown(fn: () => unknown): ErrnoError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ErrnoError);
    return err as ErrnoError;
  }
  throw new Error("expected an ErrnoError, nothing was thrown");
}

test("runtime names the FFI behind it", () => {
  expect(sys.runtime).toBe("bun");
});

describe("mknod", () => {
  test.skipIf(!isRoot)("makes the 0/0 character device overlay uses for whiteouts", () => {
    const p = path.join(root, "wh");
    sys.mknod(p, S_IFCHR | 0o644, 0, 0);
    const st = fs.lstatSync(p);
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(0);
    expect(st.mode & 0o777).toBe(0o644 & ~process.umask());
  });

  test.skipIf(!isRoot)("makes block devices with large major and minor numbers", () => {
    const sda1 = path.join(root, "sda1");
    sys.mknod(sda1, S_IFBLK | 0o600, 8, 1);
    expect(fs.lstatSync(sda1).isBlockDevice()).toBe(true);
    expect(fs.lstatSync(sda1).rdev).toBe(0x801);
    // Minor above 255 and major above 255 exercise every part of glibc's split encoding.
    const big = path.join(root, "big");
    sys.mknod(big, S_IFBLK | 0o600, 300, 70000);
    expect(fs.lstatSync(big).rdev).toBe(0x11112c70);
  });

  test("makes fifos, and refuses to overwrite", () => {
    const p = path.join(root, "fifo");
    sys.mknod(p, S_IFIFO | 0o600, 0, 0);
    expect(fs.lstatSync(p).isFIFO()).toBe(true);
    const err = thrown(() => sys.mknod(p, S_IFIFO | 0o600, 0, 0));
    expect(err.code).toBe("EEXIST");
    expect(err.message).toBe(`mknod "${p}": EEXIST`);
  });

  test("makedev matches glibc for the 64-bit dev_t", () => {
    expect(makedev(0, 0)).toBe(0n);
    expect(makedev(8, 1)).toBe(0x801n);
    expect(makedev(0x12345, 0x6789a)).toBe(0x120006783459an);
  });
});

describe("lchown", () => {
  test.skipIf(!isRoot)("changes the symlink, not its target", () => {
    const target = path.join(root, "target");
    const link = path.join(root, "link");
    fs.writeFileSync(target, "x");
    fs.symlinkSync(target, link);
    sys.lchown(link, 1234, 5678);
    expect(fs.lstatSync(link)).toMatchObject({ uid: 1234, gid: 5678 });
    expect(fs.statSync(target)).toMatchObject({ uid: 0, gid: 0 });
    sys.lchown(target, 4321, 8765);
    expect(fs.statSync(target)).toMatchObject({ uid: 4321, gid: 8765 });
  });

  test("throws ENOENT naming a missing path", () => {
    const p = path.join(root, "missing");
    expect(thrown(() => sys.lchown(p, 1, 1)).message).toBe(`lchown "${p}": ENOENT`);
  });
});

describe("lutimes", () => {
  const atime = { sec: 1_000_000_000, nsec: 123_456_789 };
  const mtime = { sec: 1_234_567_890, nsec: 987_654_321 };

  test("sets nanosecond times on a file", () => {
    const p = path.join(root, "f");
    fs.writeFileSync(p, "x");
    sys.lutimes(p, atime, mtime);
    const st = fs.lstatSync(p, { bigint: true });
    expect(st.atimeNs).toBe(1_000_000_000_123_456_789n);
    expect(st.mtimeNs).toBe(1_234_567_890_987_654_321n);
  });

  test("sets the symlink's own times and leaves the target alone", () => {
    const target = path.join(root, "target");
    const link = path.join(root, "link");
    fs.writeFileSync(target, "x");
    fs.symlinkSync(target, link);
    const before = fs.statSync(target, { bigint: true }).mtimeNs;
    sys.lutimes(link, atime, mtime);
    expect(fs.lstatSync(link, { bigint: true }).mtimeNs).toBe(1_234_567_890_987_654_321n);
    expect(fs.statSync(target, { bigint: true }).mtimeNs).toBe(before);
  });

  test("accepts times before the epoch", () => {
    const p = path.join(root, "old");
    fs.writeFileSync(p, "");
    sys.lutimes(p, atime, { sec: -86_400, nsec: 5 });
    expect(fs.lstatSync(p, { bigint: true }).mtimeNs).toBe(-86_399_999_999_995n);
  });
});

describe("xattrs", () => {
  const binary = Uint8Array.from({ length: 256 }, (_, i) => i);

  test.skipIf(!isRoot)("round-trip a binary value in the user and trusted namespaces", () => {
    const p = path.join(root, "f");
    fs.writeFileSync(p, "x");
    sys.lsetxattr(p, "user.blob", binary);
    sys.lsetxattr(p, "trusted.overlay.opaque", new TextEncoder().encode("y"));
    sys.lsetxattr(p, "user.empty", new Uint8Array(0));
    expect(sys.lgetxattr(p, "user.blob")).toEqual(binary);
    expect(new TextDecoder().decode(sys.lgetxattr(p, "trusted.overlay.opaque")!)).toBe("y");
    expect(sys.lgetxattr(p, "user.empty")).toEqual(new Uint8Array(0));
    expect(sys.llistxattr(p).sort()).toEqual(["trusted.overlay.opaque", "user.blob", "user.empty"]);

    sys.lremovexattr(p, "user.blob");
    expect(sys.lgetxattr(p, "user.blob")).toBeNull();
    expect(sys.llistxattr(p).sort()).toEqual(["trusted.overlay.opaque", "user.empty"]);
  });

  test.skipIf(!isRoot)("read through a descriptor openAt gave (flistxattr, fgetxattr); openAt refuses a symlink", () => {
    const p = path.join(root, "f");
    fs.writeFileSync(p, "x");
    fs.symlinkSync(p, path.join(root, "l"));
    sys.lsetxattr(p, "user.blob", binary);
    sys.lsetxattr(p, "trusted.overlay.opaque", new TextEncoder().encode("y"));
    const dirfd = sys.openDir(root);
    try {
      const fd = sys.openAt(dirfd, "f", O.RDONLY);
      try {
        expect(sys.flistxattr(fd).sort()).toEqual(["trusted.overlay.opaque", "user.blob"]);
        expect(sys.fgetxattr(fd, "user.blob")).toEqual(binary);
        expect(sys.fgetxattr(fd, "user.absent")).toBeNull();
      } finally {
        sys.close(fd);
      }
      expect(() => sys.openAt(dirfd, "l", O.RDONLY)).toThrow(expect.objectContaining({ code: "ELOOP" }));
    } finally {
      sys.close(dirfd);
    }
  });

  test.skipIf(!isRoot)("honour a subarray's offset", () => {
    const p = path.join(root, "f");
    fs.writeFileSync(p, "");
    sys.lsetxattr(p, "user.part", binary.subarray(250));
    expect(sys.lgetxattr(p, "user.part")).toEqual(Uint8Array.of(250, 251, 252, 253, 254, 255));
  });

  test.skipIf(!isRoot)("set security.capability on a file", () => {
    const p = path.join(root, "ping");
    fs.writeFileSync(p, "");
    // vfs_cap_data revision 2, effective, permitted = CAP_NET_RAW (bit 13).
    const caps = Uint8Array.of(1, 0, 0, 2, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    sys.lsetxattr(p, "security.capability", caps);
    expect(sys.lgetxattr(p, "security.capability")).toEqual(caps);
    expect(sys.llistxattr(p)).toContain("security.capability");
  });

  test.skipIf(!isRoot)("act on a symlink itself", () => {
    const target = path.join(root, "target");
    const link = path.join(root, "link");
    fs.writeFileSync(target, "");
    fs.symlinkSync(target, link);
    sys.lsetxattr(link, "trusted.mark", binary);
    expect(sys.lgetxattr(link, "trusted.mark")).toEqual(binary);
    expect(sys.lgetxattr(target, "trusted.mark")).toBeNull();
    expect(sys.llistxattr(target)).toEqual([]);
  });

  test("a missing attribute is null, a missing file throws", () => {
    const p = path.join(root, "f");
    fs.writeFileSync(p, "");
    expect(sys.lgetxattr(p, "user.nothing")).toBeNull();
    expect(sys.llistxattr(p)).toEqual([]);
    expect(thrown(() => sys.lremovexattr(p, "user.nothing")).code).toBe("ENODATA");
    const missing = path.join(root, "missing");
    expect(thrown(() => sys.lgetxattr(missing, "user.x")).message).toBe(`lgetxattr "${missing}": ENOENT`);
    expect(thrown(() => sys.llistxattr(missing)).code).toBe("ENOENT");
  });
});

describe("mount", () => {
  test.skipIf(!isRoot)("mounts a tmpfs with flags and umount2 removes it", () => {
    const dir = path.join(root, "mnt");
    fs.mkdirSync(dir);
    sys.mount("tmpfs", dir, "tmpfs", MS.NOSUID | MS.NODEV, "size=1m,mode=700");
    try {
      expect(mountOptions(dir)?.split(",")).toEqual(expect.arrayContaining(["nosuid", "nodev"]));
      expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
      fs.writeFileSync(path.join(dir, "inside"), "x");
    } finally {
      sys.umount2(dir, 0);
    }
    expect(mountOptions(dir)).toBeUndefined();
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test.skipIf(!isRoot)("statfs reads the tmpfs magic and sizes", () => {
    const dir = tmpfs("mnt");
    // Use 16 of the 256 blocks so every size field differs from its neighbour.
    fs.writeFileSync(path.join(dir, "used"), Buffer.alloc(16 * 4096, 1));
    const st = sys.statfs(dir);
    expect(st.type).toBe(TMPFS_MAGIC);
    expect(fsName(st.type)).toBe("tmpfs");
    expect(backingFs(sys, dir)).toBe("tmpfs");
    expect(st).toMatchObject({ bsize: 4096, blocks: 256, bfree: 240, bavail: 240 });
    expect(st.files).toBeGreaterThan(0);
    expect(st.ffree).toBeLessThan(st.files);
  });

  test("mount on a missing directory throws ENOENT naming it", () => {
    const dir = path.join(root, "nope");
    const err = thrown(() => sys.mount("tmpfs", dir, "tmpfs", 0, ""));
    expect(err).toMatchObject({ code: "ENOENT", errno: 2, syscall: "mount", path: dir });
    expect(err.message).toContain(dir);
  });

  test.skipIf(!isRoot)("umount2 of a directory that is not a mount point throws EINVAL", () => {
    expect(thrown(() => sys.umount2(root, 0))).toMatchObject({ code: "EINVAL", syscall: "umount2", path: root });
  });

  test("a path with an embedded NUL is EINVAL, not truncated", () => {
    expect(thrown(() => sys.statfs(`${root}\0/etc`)).code).toBe("EINVAL");
  });
});

describe("fsName", () => {
  test("names moby's magics and reports unknown ones like moby", () => {
    expect(fsName(0xef53)).toBe("extfs");
    expect(fsName(0x58465342)).toBe("xfs");
    expect(fsName(0x794c7630)).toBe("overlayfs");
    expect(fsName(BTRFS_MAGIC)).toBe("btrfs");
    expect(fsName(BTRFS_MAGIC | 0)).toBe("btrfs");
    expect(fsName(0xdeadbeef)).toBe("<unknown>");
  });
});

describe("loopAttach", () => {
  /** The backing file of /dev/loopN as sysfs reports it, or null once detached. */
  const backingOf = (device: string) => {
    const file = path.join("/sys/block", path.basename(device), "loop", "backing_file");
    return fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim() : null;
  };

  test("lays out struct loop_config as <linux/loop.h> does: fd, autoclear flag, file name", () => {
    const buf = encodeLoopConfig(7, "/h/.quota/abc.img");
    const view = new DataView(buf.buffer);
    expect(buf.byteLength).toBe(304);
    expect(view.getUint32(0, true)).toBe(7);
    expect(view.getUint32(60, true)).toBe(4);
    expect(new TextDecoder().decode(buf.subarray(64, 64 + 17))).toBe("/h/.quota/abc.img");
    expect(encodeLoopConfig(1, "x".repeat(100)).subarray(64, 128).indexOf(0)).toBe(63);
  });

  test.skipIf(!isRoot || !fs.existsSync("/dev/loop-control"))("binds a file with autoclear: the device detaches once unmounted and closed", async () => {
    const image = path.join(root, "disk.img");
    fs.writeFileSync(image, "");
    fs.truncateSync(image, 16 * 1024 * 1024);
    expect(spawnSync("mkfs.ext4", ["-q", "-F", image]).status).toBe(0);
    const loop = sys.loopAttach(image);
    expect(loop.device).toMatch(/^\/dev\/loop\d+$/);
    expect(backingOf(loop.device)).toBe(image);
    const dir = path.join(root, "mnt");
    fs.mkdirSync(dir);
    sys.mount(loop.device, dir, "ext4", 0, "");
    sys.close(loop.fd);
    expect(fs.readdirSync(dir)).toEqual(["lost+found"]);
    expect(backingOf(loop.device)).toBe(image);
    sys.umount2(dir, 0);
    for (let i = 0; i < 50 && backingOf(loop.device) === image; i++) await Bun.sleep(20);
    expect(backingOf(loop.device)).not.toBe(image);
  });

  test.skipIf(!isRoot || !fs.existsSync("/dev/loop-control"))("names the file it cannot open (skipped without root and loop devices)", () => {
    const missing = path.join(root, "missing.img");
    const err = thrown(() => sys.loopAttach(missing));
    expect(err.code).toBe("ENOENT");
    expect(err.message).toContain(missing);
  });
});

describe("ficlone", () => {
  /** Open `src` for reading and `dst` fresh for writing, closed after the test. */
  function openPair(src: string, dst: string): [number, number] {
    const fds = [fs.openSync(src, "r"), fs.openSync(dst, "w")] as [number, number];
    cleanups.push(() => fds.forEach((fd) => fs.closeSync(fd)));
    return fds;
  }

  test.skipIf(!isRoot)("throws on tmpfs, which cannot share extents", () => {
    const dir = tmpfs("mnt");
    fs.writeFileSync(path.join(dir, "src"), "data");
    const [src, dst] = openPair(path.join(dir, "src"), path.join(dir, "dst"));
    const err = thrown(() => sys.ficlone(src, dst));
    expect(["EOPNOTSUPP", "EINVAL", "EXDEV"]).toContain(err.code);
    expect(err.syscall).toBe("ficlone");
  });

  test.skipIf(!isRoot || !hasMkfsBtrfs || !hasBtrfs)(
    "shares extents on btrfs (skipped without root, btrfs-progs or the btrfs module)",
    () => {
      const image = path.join(root, "btrfs.img");
      fs.writeFileSync(image, "");
      fs.truncateSync(image, 256 * 1024 * 1024);
      expect(spawnSync("mkfs.btrfs", ["-q", image]).status).toBe(0);
      const loop = spawnSync("losetup", ["--find", "--show", image], { encoding: "utf8" }).stdout.trim();
      expect(loop).toStartWith("/dev/loop");
      cleanups.push(() => spawnSync("losetup", ["-d", loop]));
      const dir = path.join(root, "mnt");
      fs.mkdirSync(dir);
      sys.mount(loop, dir, "btrfs", 0, "");
      cleanups.push(() => sys.umount2(dir, 0));
      expect(sys.statfs(dir).type).toBe(BTRFS_MAGIC);
      expect(backingFs(sys, dir)).toBe("btrfs");

      const data = randomBytes(256 * 1024);
      fs.writeFileSync(path.join(dir, "src"), data);
      const [src, dst] = openPair(path.join(dir, "src"), path.join(dir, "dst"));
      sys.ficlone(src, dst);
      expect(fs.readFileSync(path.join(dir, "dst")).equals(data)).toBe(true);
      const extents = spawnSync("filefrag", ["-v", path.join(dir, "dst")], { encoding: "utf8" }).stdout;
      expect(extents).toContain("shared");
    },
  );
});

describe("lstat", () => {
  test("reports the entry itself with nanosecond times, devices and owners", () => {
    const sys = createSys();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "strata-lstat-"));
    try {
      const file = path.join(dir, "f");
      fs.writeFileSync(file, "12345");
      sys.lutimes(file, { sec: 1_000, nsec: 1 }, { sec: 1_700_000_000, nsec: 123_456_789 });
      const link = path.join(dir, "l");
      fs.symlinkSync("f", link);
      sys.lchown(link, 7, 8);
      const dev = path.join(dir, "d");
      sys.mknod(dev, 0o20640, 300, 70000);
      expect(sys.lstat(file)).toMatchObject({ size: 5, nlink: 1, mtime: { sec: 1_700_000_000, nsec: 123_456_789 }, atime: { sec: 1_000, nsec: 1 } });
      expect(sys.lstat(file).mode).toBe(0o100644);
      expect(sys.lstat(file).ino).toBe(fs.lstatSync(file, { bigint: true }).ino);
      expect(sys.lstat(link)).toMatchObject({ mode: 0o120777, uid: 7, gid: 8, size: 1 });
      expect(sys.lstat(dev)).toMatchObject({ mode: 0o20640, rdevMajor: 300, rdevMinor: 70000 });
      expect(() => sys.lstat(path.join(dir, "missing"))).toThrow(`lstat "${dir}/missing": ENOENT`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("new mount API", () => {
  const hasOverlay = fs.readFileSync("/proc/filesystems", "utf8").includes("\toverlay\n");

  test.skipIf(!isRoot)("fsopen, fsconfig, fsmount and moveMount mount a tmpfs read-only", () => {
    const dir = path.join(root, "mnt");
    fs.mkdirSync(dir);
    const fsfd = sys.fsopen("tmpfs");
    try {
      sys.fsconfig(fsfd, "size", "1m");
      sys.fsconfig(fsfd, "mode", "700");
      sys.fsconfigCreate(fsfd);
      const mfd = sys.fsmount(fsfd, MOUNT_ATTR.RDONLY | MOUNT_ATTR.NODEV);
      try {
        sys.moveMount(mfd, dir);
      } finally {
        sys.close(mfd);
      }
    } finally {
      sys.close(fsfd);
    }
    cleanups.push(() => sys.umount2(dir, MNT.DETACH));
    expect(sys.statfs(dir).type).toBe(TMPFS_MAGIC);
    expect(mountOptions(dir)?.split(",")).toEqual(expect.arrayContaining(["ro", "nodev"]));
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
  });

  test.skipIf(!isRoot || !hasOverlay || noLowerdirPlus !== null)(`passes overlay lower layers one at a time with lowerdir+${noLowerdirPlus ? ` (skipped: ${noLowerdirPlus})` : ""}`, () => {
    const dirs = ["l1", "l2", "upper", "work", "merged"].map((d) => path.join(root, d));
    for (const d of dirs) fs.mkdirSync(d);
    const [l1, l2, upper, work, merged] = dirs;
    fs.writeFileSync(path.join(l1, "shared"), "from l1");
    fs.writeFileSync(path.join(l2, "shared"), "from l2");
    fs.writeFileSync(path.join(l2, "only-l2"), "x");
    const fsfd = sys.fsopen("overlay");
    try {
      sys.fsconfig(fsfd, "lowerdir+", l1);
      sys.fsconfig(fsfd, "lowerdir+", l2);
      sys.fsconfig(fsfd, "upperdir", upper);
      sys.fsconfig(fsfd, "workdir", work);
      sys.fsconfigCreate(fsfd);
      const mfd = sys.fsmount(fsfd, 0);
      sys.moveMount(mfd, merged);
      sys.close(mfd);
    } finally {
      sys.close(fsfd);
    }
    cleanups.push(() => sys.umount2(merged, MNT.DETACH));
    expect(fs.readFileSync(path.join(merged, "shared"), "utf8")).toBe("from l1");
    expect(fs.readdirSync(merged).sort()).toEqual(["only-l2", "shared"]);
  });

  test.skipIf(!isRoot)("a rejected option throws naming it, and fsLog holds the kernel's reason", () => {
    const fsfd = sys.fsopen("tmpfs");
    try {
      expect(thrown(() => sys.fsconfig(fsfd, "no-such-option", "1"))).toMatchObject({
        syscall: "fsconfig",
        code: "EINVAL",
        path: "no-such-option=1",
      });
      expect(sys.fsLog(fsfd).join("\n")).toContain("no-such-option");
      expect(sys.fsLog(fsfd)).toEqual([]);
    } finally {
      sys.close(fsfd);
    }
  });

  test("fsopen of an unknown filesystem throws ENODEV", () => {
    expect(thrown(() => sys.fsopen("no-such-fs"))).toMatchObject({ syscall: "fsopen", code: "ENODEV", path: "no-such-fs" });
  });

  test("close of a bad fd throws EBADF", () => {
    expect(thrown(() => sys.close(987654)).code).toBe("EBADF");
  });
});

describe("rename2", () => {
  test("EXCHANGE swaps two directories atomically", () => {
    const a = path.join(root, "a");
    const b = path.join(root, "b");
    fs.mkdirSync(a);
    fs.mkdirSync(b);
    fs.writeFileSync(path.join(a, "in-a"), "");
    fs.writeFileSync(path.join(b, "in-b"), "");
    sys.rename2(a, b, RENAME.EXCHANGE);
    expect(fs.readdirSync(a)).toEqual(["in-b"]);
    expect(fs.readdirSync(b)).toEqual(["in-a"]);
  });

  test("NOREPLACE refuses an existing target, and a missing source is ENOENT", () => {
    fs.writeFileSync(path.join(root, "x"), "");
    fs.writeFileSync(path.join(root, "y"), "");
    expect(thrown(() => sys.rename2(path.join(root, "x"), path.join(root, "y"), RENAME.NOREPLACE))).toMatchObject({
      code: "EEXIST",
      syscall: "renameat2",
    });
    expect(thrown(() => sys.rename2(path.join(root, "nope"), path.join(root, "z"), 0)).code).toBe("ENOENT");
  });
});

describe("readdirTypes", () => {
  test("lists every entry with its d_type and inode, without . and ..", () => {
    fs.mkdirSync(path.join(root, "dir"));
    fs.writeFileSync(path.join(root, "file"), "");
    fs.symlinkSync("file", path.join(root, "link"));
    // Enough long names to need more than one getdents64 call.
    for (let i = 0; i < 400; i++) fs.writeFileSync(path.join(root, `f${i}-${"x".repeat(100)}`), "");
    const entries = sys.readdirTypes(root);
    expect(entries.length).toBe(403);
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(byName.get("dir")?.type).toBe(DT.DIR);
    expect(byName.get("file")?.type).toBe(DT.REG);
    expect(byName.get("link")?.type).toBe(DT.LNK);
    expect(byName.get("file")?.ino).toBe(fs.lstatSync(path.join(root, "file"), { bigint: true }).ino);
  });

  test("a file is ENOTDIR, a missing path ENOENT", () => {
    fs.writeFileSync(path.join(root, "file"), "");
    expect(thrown(() => sys.readdirTypes(path.join(root, "file"))).code).toBe("ENOTDIR");
    expect(thrown(() => sys.readdirTypes(path.join(root, "missing"))).code).toBe("ENOENT");
  });
});

describe("lreaddirTypes", () => {
  test("lists a directory as readdirTypes does", () => {
    fs.mkdirSync(path.join(root, "dir"));
    fs.writeFileSync(path.join(root, "dir", "file"), "");
    expect(sys.lreaddirTypes(path.join(root, "dir"))).toEqual(sys.readdirTypes(path.join(root, "dir")));
  });

  test("refuses a symlink to a directory with ENOTDIR instead of listing its target", () => {
    fs.mkdirSync(path.join(root, "dir"));
    fs.writeFileSync(path.join(root, "dir", "secret"), "");
    fs.symlinkSync("dir", path.join(root, "link"));
    expect(sys.readdirTypes(path.join(root, "link")).map((e) => e.name)).toEqual(["secret"]);
    expect(thrown(() => sys.lreaddirTypes(path.join(root, "link"))).code).toBe("ENOTDIR");
  });

  test("a file is ENOTDIR, a missing path ENOENT", () => {
    fs.writeFileSync(path.join(root, "file"), "");
    expect(thrown(() => sys.lreaddirTypes(path.join(root, "file"))).code).toBe("ENOTDIR");
    expect(thrown(() => sys.lreaddirTypes(path.join(root, "missing"))).code).toBe("ENOENT");
  });
});

describe("file descriptor writes", () => {
  test("createNew makes a new file and refuses anything at the name, a symlink above all", () => {
    const file = path.join(root, "f");
    const fd = sys.createNew(file, 0o600);
    sys.close(fd);
    expect(thrown(() => sys.createNew(file, 0o600)).code).toBe("EEXIST");
    fs.writeFileSync(path.join(root, "target"), "keep");
    fs.symlinkSync("target", path.join(root, "link"));
    expect(thrown(() => sys.createNew(path.join(root, "link"), 0o600)).code).toBe("EEXIST");
    // A dangling link is not followed into creating its target either.
    fs.symlinkSync("absent", path.join(root, "dangling"));
    expect(thrown(() => sys.createNew(path.join(root, "dangling"), 0o600)).code).toBe("EEXIST");
    expect(fs.existsSync(path.join(root, "absent"))).toBe(false);
    expect(fs.readFileSync(path.join(root, "target"), "utf8")).toBe("keep");
  });

  test("writeAll, fchown, fsetxattr, fchmod and futimes set content and metadata on the open file", () => {
    const file = path.join(root, "f");
    const fd = sys.createNew(file, 0o600);
    const data = randomBytes(3 * 1024 * 1024 + 17);
    try {
      sys.writeAll(fd, data);
      sys.writeAll(fd, new Uint8Array(0));
      if (isRoot) sys.fchown(fd, 1234, 5678);
      sys.fsetxattr(fd, "user.k", new Uint8Array([0, 1, 2]));
      sys.fchmod(fd, 0o4751);
      sys.futimes(fd, { sec: 1_000_000_000, nsec: 5 }, { sec: 1_600_000_000, nsec: 123_456_789 });
    } finally {
      sys.close(fd);
    }
    // Before reading it back: the read moves the atime (relatime).
    const st = sys.lstat(file);
    expect(st.mode & 0o7777).toBe(0o4751);
    if (isRoot) expect([st.uid, st.gid]).toEqual([1234, 5678]);
    expect(st.mtime).toEqual({ sec: 1_600_000_000, nsec: 123_456_789 });
    expect(st.atime).toEqual({ sec: 1_000_000_000, nsec: 5 });
    expect([...sys.lgetxattr(file, "user.k")!]).toEqual([0, 1, 2]);
    expect(Buffer.compare(fs.readFileSync(file), data)).toBe(0);
  });

  test("readInto reads what is there and 0 at the end; a closed fd is EBADF", () => {
    const file = path.join(root, "f");
    fs.writeFileSync(file, "hello");
    const fd = sys.openEntry(file, 0);
    const buf = new Uint8Array(16);
    expect(sys.readInto(fd, buf)).toBe(5);
    expect(new TextDecoder().decode(buf.subarray(0, 5))).toBe("hello");
    expect(sys.readInto(fd, buf)).toBe(0);
    sys.close(fd);
    expect(thrown(() => sys.readInto(fd, buf)).code).toBe("EBADF");
    expect(thrown(() => sys.writeAll(fd, buf)).code).toBe("EBADF");
  });
});
