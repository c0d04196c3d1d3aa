/**
 * Smoke test of the Deno `Sys` adapter; bun:test cannot load `Deno.dlopen`, so this runs alone:
 * `node_modules/.bin/deno run -A test/sys-deno-smoke.ts` (as root, from the repo root).
 * Every method is called once; the exit code is non-zero on any mismatch.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ErrnoError } from "../src/core/errors.ts";
import { removeBeneath } from "../src/store/remove-tree.ts";
import { createSys } from "../src/sys/deno.ts";
import { fsName } from "../src/sys/fs-magic.ts";
import { DT, MNT, MS, O, RENAME } from "../src/sys/types.ts";
import { smoke } from "./helpers/smoke-tally.ts";

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const TMPFS_MAGIC = 0x01021994;

const tally = smoke();
const check = tally.check;

/** The error `fn` threw, or a marker that it did not throw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return "nothing thrown";
}

const equal = (a: Uint8Array | null, b: Uint8Array) => a !== null && a.length === b.length && a.every((x, i) => x === b[i]);

const sys = createSys();
const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-sys-deno-"));
const mnt = path.join(root, "mnt");
fs.mkdirSync(mnt);
let mounted = false;
try {
  check("runtime", () => sys.runtime === "deno");

  sys.mount("tmpfs", mnt, "tmpfs", MS.NOSUID | MS.NODEV, "size=1m");
  mounted = true;
  check("mount + statfs", () => {
    const st = sys.statfs(mnt);
    return st.type === TMPFS_MAGIC && fsName(st.type) === "tmpfs" && st.bsize === 4096 && st.blocks === 256;
  });

  const file = path.join(mnt, "f");
  const link = path.join(mnt, "link");
  fs.writeFileSync(file, "x");
  fs.symlinkSync(file, link);

  check("ficlone on tmpfs throws", () => {
    const src = fs.openSync(file, "r");
    const dst = fs.openSync(path.join(mnt, "clone"), "w");
    try {
      const err = thrown(() => sys.ficlone(src, dst));
      return err instanceof ErrnoError && err.syscall === "ficlone";
    } finally {
      fs.closeSync(src);
      fs.closeSync(dst);
    }
  });

  check("mknod char 0/0", () => {
    const p = path.join(mnt, "wh");
    sys.mknod(p, S_IFCHR | 0o600, 0, 0);
    const st = Deno.lstatSync(p);
    return st.isCharDevice === true && st.rdev === 0;
  });
  check("mknod block 300/70000", () => {
    const p = path.join(mnt, "blk");
    sys.mknod(p, S_IFBLK | 0o600, 300, 70000);
    return Deno.lstatSync(p).isBlockDevice === true && Deno.lstatSync(p).rdev === 0x11112c70;
  });

  const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
  check("xattr round trip", () => {
    sys.lsetxattr(file, "user.blob", binary);
    sys.lsetxattr(file, "trusted.t", binary.subarray(200));
    return equal(sys.lgetxattr(file, "user.blob"), binary) && equal(sys.lgetxattr(file, "trusted.t"), binary.subarray(200));
  });
  check("llistxattr", () => sys.llistxattr(file).sort().join() === "trusted.t,user.blob");
  check("openAt + flistxattr + fgetxattr (a symlink refused)", () => {
    const dirfd = sys.openDir(path.dirname(file));
    try {
      const fd = sys.openAt(dirfd, path.basename(file), 0);
      try {
        if (sys.flistxattr(fd).sort().join() !== "trusted.t,user.blob" || !equal(sys.fgetxattr(fd, "user.blob"), binary)) return false;
        if (sys.fgetxattr(fd, "user.absent") !== null) return false;
      } finally {
        sys.close(fd);
      }
      try {
        sys.close(sys.openAt(dirfd, path.basename(link), 0));
        return false;
      } catch (err) {
        return (err as { code?: string }).code === "ELOOP";
      }
    } finally {
      sys.close(dirfd);
    }
  });
  check("lremovexattr", () => {
    sys.lremovexattr(file, "user.blob");
    return sys.lgetxattr(file, "user.blob") === null && sys.llistxattr(file).join() === "trusted.t";
  });

  check("lchown a symlink", () => {
    sys.lchown(link, 1234, 5678);
    const l = Deno.lstatSync(link);
    const t = Deno.statSync(file);
    return l.uid === 1234 && l.gid === 5678 && t.uid === 0;
  });

  check("lutimes ns", () => {
    sys.lutimes(link, { sec: 1_000_000_000, nsec: 1 }, { sec: 1_234_567_890, nsec: 987_654_321 });
    // Deno's node:fs bigint stats stop at milliseconds, so ask coreutils for the nanoseconds.
    const out = new Deno.Command("stat", { args: ["-c", "%.9Y", link] }).outputSync();
    return new TextDecoder().decode(out.stdout).trim() === "1234567890.987654321";
  });

  check("lstat ns via statx", () => {
    const st = sys.lstat(link);
    return st.mtime.sec === 1_234_567_890 && st.mtime.nsec === 987_654_321 && st.uid === 1234 && (st.mode & 0o170000) === 0o120000;
  });

  check("mount on a missing dir throws ENOENT", () => {
    const missing = path.join(root, "nope");
    const err = thrown(() => sys.mount("tmpfs", missing, "tmpfs", 0, ""));
    return err instanceof ErrnoError && err.code === "ENOENT" && err.message.includes(missing);
  });
  check("umount2 of a non-mountpoint throws EINVAL", () => {
    const err = thrown(() => sys.umount2(root, 0));
    return err instanceof ErrnoError && err.code === "EINVAL";
  });

  check("readdirTypes", () => {
    const types = new Map(sys.readdirTypes(mnt).map((e) => [e.name, e.type]));
    return types.get("f") === DT.REG && types.get("link") === DT.LNK && !types.has(".");
  });
  check("lreaddirTypes lists a directory and refuses a symlink to one with ENOTDIR", () => {
    fs.symlinkSync(mnt, path.join(root, "dirlink"));
    const err = thrown(() => sys.lreaddirTypes(path.join(root, "dirlink")));
    return sys.lreaddirTypes(mnt).length === sys.readdirTypes(mnt).length && err instanceof ErrnoError && err.code === "ENOTDIR";
  });
  for (const openat2 of [true, false]) {
    const fdSys = createSys({ openat2 });
    const how = openat2 ? "openat2" : "component walk";
    check(`openBeneath (${how}) opens below a directory and refuses a symlink on the way`, () => {
      fs.mkdirSync(path.join(mnt, "tree", "sub"), { recursive: true });
      fs.writeFileSync(path.join(mnt, "tree", "sub", "f"), "x");
      fs.symlinkSync(path.join(mnt, "tree"), path.join(mnt, "tree", "up"), "dir");
      const top = fdSys.openDir(path.join(mnt, "tree"));
      try {
        const sub = fdSys.openBeneath(top, "sub", O.DIRECTORY);
        const names = fdSys.readdirFd(sub).map((e) => e.name);
        const st = fdSys.statAt(sub, "f");
        fdSys.close(sub);
        const err = thrown(() => fdSys.openBeneath(top, "up/sub", O.DIRECTORY));
        const climb = thrown(() => fdSys.openBeneath(top, "../tree", O.DIRECTORY));
        return names.join() === "f" && st.size === 1 && err instanceof ErrnoError && ["ELOOP", "ENOTDIR"].includes(err.code) &&
          climb instanceof ErrnoError;
      } finally {
        fdSys.close(top);
        fs.rmSync(path.join(mnt, "tree"), { recursive: true });
      }
    });
  }
  check("createNew refuses a symlink; writeAll, fchown, fsetxattr, fchmod, futimes, readInto on the fd", () => {
    fs.symlinkSync("absent", path.join(mnt, "dangling"));
    let refused = false;
    try {
      sys.createNew(path.join(mnt, "dangling"), 0o600);
    } catch (e) {
      refused = e instanceof ErrnoError && e.code === "EEXIST";
    }
    const file = path.join(mnt, "new");
    const fd = sys.createNew(file, 0o600);
    sys.writeAll(fd, new TextEncoder().encode("abc"));
    sys.fchown(fd, 7, 8);
    sys.fsetxattr(fd, "user.k", new Uint8Array([9]));
    sys.fchmod(fd, 0o2755);
    sys.futimes(fd, { sec: 5, nsec: 6 }, { sec: 7, nsec: 8 });
    sys.close(fd);
    const st = sys.lstat(file);
    const rd = sys.openEntry(file, 0);
    const buf = new Uint8Array(8);
    const n = sys.readInto(rd, buf);
    sys.close(rd);
    fs.rmSync(file);
    fs.rmSync(path.join(mnt, "dangling"));
    return refused && n === 3 && st.uid === 7 && st.gid === 8 && (st.mode & 0o7777) === 0o2755 &&
      st.mtime.sec === 7 && st.mtime.nsec === 8 && st.size === 3;
  });
  check("unlinkAt, renameAt, fsync and syncfs on directory fds", () => {
    fs.mkdirSync(path.join(mnt, "d"));
    fs.writeFileSync(path.join(mnt, "d", "f"), "x");
    const d = sys.openDir(path.join(mnt, "d"));
    try {
      sys.renameAt(d, "f", d, "g", RENAME.NOREPLACE);
      sys.fsync(d);
      sys.syncfs(d);
      sys.unlinkAt(d, "g", false);
      return sys.readdirFd(d).length === 0;
    } finally {
      sys.close(d);
      fs.rmdirSync(path.join(mnt, "d"));
    }
  });
  {
    // syncAsync runs on Deno's FFI thread pool; a bad fd must reject, not hang or pass.
    const d = sys.openDir(mnt);
    const ok = await sys.syncAsync(d, true).then(() => sys.syncAsync(d, false)).then(() => true, (e) => e);
    sys.close(d);
    const bad = await sys.syncAsync(987654, false).then(() => "resolved", (e) => e);
    check("syncAsync syncs a filesystem and a directory off the main thread, and rejects a bad fd", () =>
      ok === true && bad instanceof ErrnoError && bad.code === "EBADF");
  }
  {
    // removeBeneath is async: its result is checked once it settles.
    fs.mkdirSync(path.join(mnt, "rm", "a", "b"), { recursive: true });
    fs.writeFileSync(path.join(mnt, "keep"), "kept");
    fs.symlinkSync(path.join(mnt, "keep"), path.join(mnt, "rm", "a", "link"));
    fs.symlinkSync(mnt, path.join(mnt, "rm", "a", "b", "dirlink"));
    const err = await removeBeneath(sys, mnt, "rm").then(() => null, (e) => e);
    check("removeBeneath removes a tree with links in it and leaves their targets alone", () =>
      err === null && !fs.existsSync(path.join(mnt, "rm")) && fs.readFileSync(path.join(mnt, "keep"), "utf8") === "kept");
  }
  check("rename2 EXCHANGE", () => {
    fs.writeFileSync(path.join(mnt, "a"), "A");
    fs.writeFileSync(path.join(mnt, "b"), "B");
    sys.rename2(path.join(mnt, "a"), path.join(mnt, "b"), RENAME.EXCHANGE);
    return fs.readFileSync(path.join(mnt, "a"), "utf8") === "B";
  });
  check("new mount API mounts a tmpfs; fsLog reads the kernel's reason", () => {
    const dir = path.join(root, "newapi");
    fs.mkdirSync(dir);
    const fsfd = sys.fsopen("tmpfs");
    try {
      const err = thrown(() => sys.fsconfig(fsfd, "no-such-option", "1"));
      const log = sys.fsLog(fsfd).join();
      sys.fsconfig(fsfd, "size", "1m");
      sys.fsconfigCreate(fsfd);
      const mfd = sys.fsmount(fsfd, 0);
      sys.moveMount(mfd, dir);
      sys.close(mfd);
      const ok = sys.statfs(dir).type === TMPFS_MAGIC;
      sys.umount2(dir, 0);
      return ok && err instanceof ErrnoError && err.code === "EINVAL" && log.includes("no-such-option");
    } finally {
      sys.close(fsfd);
    }
  });
  check("loopAttach binds a file with autoclear (LOOP_CONFIGURE through a pointer argument)", () => {
    const image = path.join(root, "disk.img");
    fs.writeFileSync(image, "");
    fs.truncateSync(image, 1024 * 1024);
    const loop = sys.loopAttach(image);
    try {
      const backing = fs.readFileSync(`/sys/block/${path.basename(loop.device)}/loop/backing_file`, "utf8").trim();
      const flags = fs.readFileSync(`/sys/block/${path.basename(loop.device)}/loop/autoclear`, "utf8").trim();
      return backing === image && flags === "1";
    } finally {
      sys.close(loop.fd);
    }
  });

  sys.umount2(mnt, 0);
  mounted = false;
  check("umount2", () => fs.readdirSync(mnt).length === 0);
} catch (err) {
  tally.fail("setup", err);
} finally {
  if (mounted) sys.umount2(mnt, MNT.DETACH);
  fs.rmSync(root, { recursive: true, force: true });
}

tally.finish();
