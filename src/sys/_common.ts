/**
 * The runtime-neutral half of `Sys`: argument encoding, struct decoding, errno checks and the
 * xattr size loops. `bun.ts` and `deno.ts` only open libc and hand their raw symbols to
 * `libcSys`, so the two adapters cannot drift apart in behaviour.
 */
import { ErrnoError } from "../core/errors.ts";
import { attachLoop } from "./_loop.ts";
import { btrfsCalls } from "./_btrfs-calls.ts";
import type { Dirent, Stat, StatFs, Sys, Timespec } from "./types.ts";

/** `AT_FDCWD` from <fcntl.h>: resolve relative paths against the working directory. */
export const AT_FDCWD = -100;
/** `AT_SYMLINK_NOFOLLOW`: act on a symlink itself, never its target. */
export const AT_SYMLINK_NOFOLLOW = 0x100;
/** `FICLONE` = `_IOW(0x94, 9, int)`. */
export const FICLONE = 0x40049409;
/** `sizeof(struct statfs)` is 120 on x86_64 and aarch64; the spare room guards other 64-bit ABIs. */
export const STATFS_BUF_SIZE = 128;

/** `sizeof(struct statx)`: the same on every architecture. */
export const STATX_BUF_SIZE = 256;
/** `STATX_BASIC_STATS`: type, mode, nlink, uid, gid, times, ino, size, blocks. */
export const STATX_BASIC_STATS = 0x7ff;

/** `FSOPEN_CLOEXEC` / `FSMOUNT_CLOEXEC`. */
export const FS_CLOEXEC = 0x1;
/** fsconfig(2) commands used by strata. */
export const FSCONFIG = { SET_FLAG: 0, SET_STRING: 1, CMD_CREATE: 6 } as const;
/** `MOVE_MOUNT_F_EMPTY_PATH`: move the mount the fd itself refers to. */
export const MOVE_MOUNT_F_EMPTY_PATH = 0x4;
/** `O_RDONLY | O_CLOEXEC`; O_DIRECTORY differs across architectures, so getdents64's ENOTDIR does its job. */
export const O_RDONLY_CLOEXEC = 0o2000000;
/**
 * `O_DIRECTORY | O_NOFOLLOW`, whose values differ between x86_64 (0o200000, 0o400000) and the
 * asm-generic architectures such as aarch64 (0o40000, 0o100000).
 */
export const O_DIRECTORY_NOFOLLOW = (typeof process !== "undefined" && process.arch === "x64") ? 0o600000 : 0o140000;
/** `O_NOFOLLOW` alone (x86_64: 0o400000; asm-generic: 0o100000). */
export const O_NOFOLLOW = (typeof process !== "undefined" && process.arch === "x64") ? 0o400000 : 0o100000;
/** `O_DIRECTORY` alone (x86_64: 0o200000; asm-generic: 0o40000). */
export const O_DIRECTORY = O_DIRECTORY_NOFOLLOW - O_NOFOLLOW;
/** `O_PATH`: a handle on the entry itself, not opened for I/O (the same value on x86_64 and aarch64). */
export const O_PATH = 0o10000000;
/** `O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC`: a new file, never an existing one or a link's target. */
export const O_CREATE_NEW = 0o1 | 0o100 | 0o200 | O_NOFOLLOW | O_RDONLY_CLOEXEC;
/** `AT_REMOVEDIR`: unlinkat removes an empty directory. */
export const AT_REMOVEDIR = 0x200;
/** openat2's `RESOLVE_*`: stay below the dirfd, follow no symlink (magic links included), cross no mount. */
export const RESOLVE = { NO_XDEV: 0x1, NO_MAGICLINKS: 0x2, NO_SYMLINKS: 0x4, BENEATH: 0x8 } as const;
/** `SYS_openat2`, one number on every architecture (the unified syscall table). glibc 2.36 has no wrapper. */
export const SYS_OPENAT2 = 437;
/** `sizeof(struct open_how)`: flags, mode, resolve (three u64). */
export const OPEN_HOW_SIZE = 24;
/** Buffer size for one getdents64 call. */
export const DIRENT_BUF_SIZE = 32 * 1024;
/** One fs-context log message is at most this long (the kernel truncates to fit). */
const FS_LOG_BUF_SIZE = 1024;

const EIO = 5;
const EINVAL = 22;
const ENOSYS = 38;
const ERANGE = 34;
const ENODATA = 61;
/** ENOTSUP and EOPNOTSUPP share 95 on Linux. */
const ENOTSUP = 95;

/** How `libcSys` is built; tests turn openat2 off to run the fallback. */
export interface SysOptions {
  /** Use openat2(2) (default); false: the per-component O_NOFOLLOW walk older kernels get. */
  openat2?: boolean;
}

/** A C pointer argument: a buffer libc reads or fills, or NULL. */
type Buf = Uint8Array | null;
/** What an FFI call returns: Bun and Deno hand back `int` as number and `ssize_t` as bigint. */
type Ret = number | bigint;

/**
 * The raw libc symbols each runtime adapter supplies, with C strings already NUL-terminated.
 * Both `bun:ffi` and `Deno.dlopen` symbol tables satisfy this shape directly.
 */
export interface Libc {
  mount(source: Buf, target: Buf, fstype: Buf, flags: number | bigint, data: Buf): Ret;
  umount2(target: Buf, flags: number): Ret;
  statfs(path: Buf, buf: Buf): Ret;
  statx(dirfd: number, path: Buf, flags: number, mask: number, buf: Buf): Ret;
  mknodat(dirfd: number, path: Buf, mode: number, dev: bigint): Ret;
  fchownat(dirfd: number, path: Buf, uid: number, gid: number, flags: number): Ret;
  utimensat(dirfd: number, path: Buf, times: Buf, flags: number): Ret;
  lsetxattr(path: Buf, name: Buf, value: Buf, size: number | bigint, flags: number): Ret;
  lgetxattr(path: Buf, name: Buf, value: Buf, size: number | bigint): Ret;
  llistxattr(path: Buf, list: Buf, size: number | bigint): Ret;
  lremovexattr(path: Buf, name: Buf): Ret;
  ioctl(fd: number, request: number | bigint, arg: number | bigint): Ret;
  fsopen(fsname: Buf, flags: number): Ret;
  fsconfig(fd: number, cmd: number, key: Buf, value: Buf, aux: number): Ret;
  fsmount(fd: number, flags: number, attrs: number): Ret;
  move_mount(fromDirfd: number, fromPath: Buf, toDirfd: number, toPath: Buf, flags: number): Ret;
  close(fd: number): Ret;
  read(fd: number, buf: Buf, count: number | bigint): Ret;
  renameat2(oldDirfd: number, oldPath: Buf, newDirfd: number, newPath: Buf, flags: number): Ret;
  open(path: Buf, flags: number, mode: number): Ret;
  getdents64(fd: number, buf: Buf, count: number | bigint): Ret;
  /** syscall(SYS_openat2, dirfd, path, how, size): the only syscall strata makes by number. */
  syscall(nr: number | bigint, dirfd: number | bigint, path: Buf, how: Buf, size: number | bigint): Ret;
  openat(dirfd: number, path: Buf, flags: number, mode: number): Ret;
  unlinkat(dirfd: number, path: Buf, flags: number): Ret;
  fsync(fd: number): Ret;
  syncfs(fd: number): Ret;
  write(fd: number, buf: Buf, count: number | bigint): Ret;
  fchown(fd: number, uid: number, gid: number): Ret;
  fchmod(fd: number, mode: number): Ret;
  futimens(fd: number, times: Buf): Ret;
  fsetxattr(fd: number, name: Buf, value: Buf, size: number | bigint, flags: number): Ret;
  fgetxattr(fd: number, name: Buf, value: Buf, size: number | bigint): Ret;
  flistxattr(fd: number, list: Buf, size: number | bigint): Ret;
  copy_file_range(fdIn: number, offIn: Buf, fdOut: number, offOut: Buf, len: number | bigint, flags: number): Ret;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Scratch buffers of the synchronous calls that decode their result before returning. */
const direntBuf = new Uint8Array(DIRENT_BUF_SIZE);
const statxBuf = new Uint8Array(STATX_BUF_SIZE);

/** `makedev(3)` with glibc's 64-bit encoding, so majors and minors above 255 survive. */
export function makedev(major: number, minor: number): bigint {
  const maj = BigInt(major >>> 0);
  const min = BigInt(minor >>> 0);
  return (min & 0xffn) | ((maj & 0xfffn) << 8n) | ((min & ~0xffn) << 12n) | ((maj & ~0xfffn) << 32n);
}

/** A NUL-terminated copy of `s`; an embedded NUL would silently cut the path short, so it is EINVAL. */
export function cstr(s: string, syscall: string): Uint8Array {
  if (s.includes("\0")) throw new ErrnoError(syscall, EINVAL, s);
  return encoder.encode(`${s}\0`);
}

/** Decode the fields of a glibc `struct statfs` (every field a 64-bit word on LP64 Linux). */
export function decodeStatfs(buf: Uint8Array): StatFs {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const word = (i: number) => Number(view.getBigUint64(i * 8, true));
  // f_type is a signed long; magics above 0x7fffffff (btrfs) are only meaningful as unsigned 32-bit.
  return {
    type: view.getUint32(0, true),
    bsize: word(1),
    blocks: word(2),
    bfree: word(3),
    bavail: word(4),
    files: word(5),
    ffree: word(6),
  };
}

/** Decode a `struct statx` (architecture-independent layout from <linux/stat.h>). */
export function decodeStatx(buf: Uint8Array): Stat {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const time = (at: number): Timespec => ({ sec: Number(view.getBigInt64(at, true)), nsec: view.getUint32(at + 8, true) });
  return {
    nlink: view.getUint32(16, true),
    uid: view.getUint32(20, true),
    gid: view.getUint32(24, true),
    mode: view.getUint16(28, true),
    ino: view.getBigUint64(32, true),
    size: Number(view.getBigUint64(40, true)),
    blocks: Number(view.getBigUint64(48, true)),
    atime: time(64),
    mtime: time(112),
    rdevMajor: view.getUint32(128, true),
    rdevMinor: view.getUint32(132, true),
  };
}

/** Two `struct timespec` (i64 sec, i64 nsec) back to back, as utimensat wants them. */
export function encodeTimespecs(atime: Timespec, mtime: Timespec): Uint8Array {
  const buf = new Uint8Array(32);
  const view = new DataView(buf.buffer);
  [atime, mtime].forEach((t, i) => {
    view.setBigInt64(i * 16, BigInt(Math.trunc(t.sec)), true);
    view.setBigInt64(i * 16 + 8, BigInt(Math.trunc(t.nsec)), true);
  });
  return buf;
}

/** Decode a run of `struct linux_dirent64` records, leaving out "." and "..". */
export function decodeDirents(buf: Uint8Array, out: Dirent[] = []): Dirent[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let at = 0; at < buf.byteLength; ) {
    const reclen = view.getUint16(at + 16, true);
    const nameStart = at + 19;
    let nameEnd = nameStart;
    while (nameEnd < at + reclen && buf[nameEnd] !== 0) nameEnd++;
    const name = decoder.decode(buf.subarray(nameStart, nameEnd));
    if (name !== "." && name !== "..") out.push({ name, type: buf[at + 18], ino: view.getBigUint64(at, true) });
    at += reclen;
  }
  return out;
}

/** A `struct open_how` for openat2(2). */
export function encodeOpenHow(flags: number, resolve: number): Uint8Array {
  const buf = new Uint8Array(OPEN_HOW_SIZE);
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, BigInt(flags), true);
  view.setBigUint64(16, BigInt(resolve), true);
  return buf;
}

/**
 * The components of a path resolved beneath a directory: refuses an absolute path, "..", and empty
 * input, so the component walk (where openat2 is missing) can never climb out.
 */
export function beneathComponents(path: string): string[] {
  const parts = path.split("/").filter((c) => c !== "" && c !== ".");
  if (path.startsWith("/") || parts.includes("..")) throw new ErrnoError("openat2", EXDEV_BENEATH, path);
  return parts;
}
/** openat2 answers EXDEV for a path that would leave the directory under RESOLVE_BENEATH. */
const EXDEV_BENEATH = 18;

/** Split llistxattr's output, a run of NUL-terminated names, into strings. */
export function splitXattrNames(buf: Uint8Array): string[] {
  return decoder.decode(buf).split("\0").filter((name) => name !== "");
}

/**
 * Throw `ErrnoError` when a libc call returned -1, else return its result as a number.
 * `errno` is a thunk so it is read only on failure, before anything else can touch it.
 */
export function check(ret: Ret, errno: () => number, syscall: string, path?: string): number {
  if (ret === -1 || ret === -1n) throw new ErrnoError(syscall, errno(), path);
  return Number(ret);
}

/**
 * The `Sys` every runtime shares, built over that runtime's raw libc symbols and errno reader;
 * `addressOf` turns a buffer into the integer a pointer-carrying ioctl argument needs.
 */
export function libcSys(
  runtime: string, libc: Libc, errno: () => number, addressOf: (buf: Uint8Array) => number | bigint, options: SysOptions = {},
): Omit<Sys, "syncAsync"> {
  /** Run one sized xattr call twice: once to learn the size, then to fill a buffer. */
  const sized = (syscall: string, path: string, call: (buf: Buf, size: number) => Ret): Uint8Array | number => {
    for (;;) {
      let size = Number(call(null, 0));
      if (size === -1) {
        const err = errno();
        if (err === ENODATA || err === ENOTSUP) return err;
        throw new ErrnoError(syscall, err, path);
      }
      if (size === 0) return new Uint8Array(0);
      const buf = new Uint8Array(size);
      size = Number(call(buf, size));
      if (size !== -1) return buf.subarray(0, size);
      const err = errno();
      // The value grew between the two calls (another writer); ask for the size again.
      if (err === ERANGE) continue;
      if (err === ENODATA || err === ENOTSUP) return err;
      throw new ErrnoError(syscall, err, path);
    }
  };

  /** Every entry of the directory open as `fd`, which it closes. */
  const readdirFrom = (fd: number, path: string): Dirent[] => {
    const out: Dirent[] = [];
    try {
      const buf = new Uint8Array(DIRENT_BUF_SIZE);
      for (;;) {
        const n = check(libc.getdents64(fd, buf, buf.byteLength), errno, "getdents64", path);
        if (n === 0) return out;
        decodeDirents(buf.subarray(0, n), out);
      }
    } finally {
      libc.close(fd);
    }
  };

  /** openat2 is Linux 5.6+; learnt from the first ENOSYS, then the component walk stands in. */
  let openat2 = options.openat2 ?? true;
  const openBeneath = (dirfd: number, path: string, flags: number): number => {
    const want = flags | O_RDONLY_CLOEXEC | O_NOFOLLOW;
    if (openat2) {
      const how = encodeOpenHow(want, RESOLVE.BENEATH | RESOLVE.NO_SYMLINKS | RESOLVE.NO_MAGICLINKS | RESOLVE.NO_XDEV);
      const ret = Number(libc.syscall(SYS_OPENAT2, dirfd, cstr(path, "openat2"), how, OPEN_HOW_SIZE));
      if (ret !== -1) return ret;
      const err = errno();
      if (err !== ENOSYS) throw new ErrnoError("openat2", err, path);
      openat2 = false;
    }
    // One component at a time, each opened with O_NOFOLLOW below the last: no link is followed,
    // no ".." climbs (mount crossings are not detected without openat2).
    const parts = beneathComponents(path);
    if (parts.length === 0) return check(libc.openat(dirfd, cstr(".", "openat"), want, 0), errno, "openat", path);
    let fd = dirfd;
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      const ret = Number(libc.openat(fd, cstr(parts[i], "openat"), last ? want : O_RDONLY_CLOEXEC | O_DIRECTORY_NOFOLLOW, 0));
      const err = ret === -1 ? errno() : 0;
      if (fd !== dirfd) libc.close(fd);
      if (ret === -1) throw new ErrnoError("openat", err, path);
      fd = ret;
    }
    return fd;
  };

  return {
    runtime,
    mount(source, target, fstype, flags, data) {
      const ret = libc.mount(
        cstr(source, "mount"),
        cstr(target, "mount"),
        cstr(fstype, "mount"),
        BigInt(flags),
        data === "" ? null : cstr(data, "mount"),
      );
      check(ret, errno, "mount", target);
    },
    umount2(target, flags) {
      check(libc.umount2(cstr(target, "umount2"), flags), errno, "umount2", target);
    },
    statfs(path) {
      const buf = new Uint8Array(STATFS_BUF_SIZE);
      check(libc.statfs(cstr(path, "statfs"), buf), errno, "statfs", path);
      return decodeStatfs(buf);
    },
    lstat(path) {
      const buf = statxBuf;
      check(libc.statx(AT_FDCWD, cstr(path, "lstat"), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buf), errno, "lstat", path);
      return decodeStatx(buf);
    },
    mknod(path, mode, major, minor) {
      const ret = libc.mknodat(AT_FDCWD, cstr(path, "mknod"), mode, makedev(major, minor));
      check(ret, errno, "mknod", path);
    },
    lchown(path, uid, gid) {
      const ret = libc.fchownat(AT_FDCWD, cstr(path, "lchown"), uid >>> 0, gid >>> 0, AT_SYMLINK_NOFOLLOW);
      check(ret, errno, "lchown", path);
    },
    lutimes(path, atime, mtime) {
      const ret = libc.utimensat(AT_FDCWD, cstr(path, "lutimes"), encodeTimespecs(atime, mtime), AT_SYMLINK_NOFOLLOW);
      check(ret, errno, "lutimes", path);
    },
    lsetxattr(path, name, value) {
      const ret = libc.lsetxattr(cstr(path, "lsetxattr"), cstr(name, "lsetxattr"), value, value.byteLength, 0);
      check(ret, errno, "lsetxattr", path);
    },
    lgetxattr(path, name) {
      const p = cstr(path, "lgetxattr");
      const n = cstr(name, "lgetxattr");
      const value = sized("lgetxattr", path, (buf, size) => libc.lgetxattr(p, n, buf, size));
      return typeof value === "number" ? null : value;
    },
    llistxattr(path) {
      const p = cstr(path, "llistxattr");
      const list = sized("llistxattr", path, (buf, size) => libc.llistxattr(p, buf, size));
      return typeof list === "number" ? [] : splitXattrNames(list);
    },
    lremovexattr(path, name) {
      check(libc.lremovexattr(cstr(path, "lremovexattr"), cstr(name, "lremovexattr")), errno, "lremovexattr", path);
    },
    ficlone(srcFd, dstFd) {
      check(libc.ioctl(dstFd, FICLONE, srcFd), errno, "ficlone");
    },
    fsopen(fsname) {
      return check(libc.fsopen(cstr(fsname, "fsopen"), FS_CLOEXEC), errno, "fsopen", fsname);
    },
    fsconfig(fd, key, value) {
      const what = value === null ? key : `${key}=${value}`;
      const ret = value === null
        ? libc.fsconfig(fd, FSCONFIG.SET_FLAG, cstr(key, "fsconfig"), null, 0)
        : libc.fsconfig(fd, FSCONFIG.SET_STRING, cstr(key, "fsconfig"), cstr(value, "fsconfig"), 0);
      check(ret, errno, "fsconfig", what);
    },
    fsconfigCreate(fd) {
      check(libc.fsconfig(fd, FSCONFIG.CMD_CREATE, null, null, 0), errno, "fsconfig", "create");
    },
    fsmount(fd, attrs) {
      return check(libc.fsmount(fd, FS_CLOEXEC, attrs), errno, "fsmount");
    },
    moveMount(fd, target) {
      const ret = libc.move_mount(fd, cstr("", "move_mount"), AT_FDCWD, cstr(target, "move_mount"), MOVE_MOUNT_F_EMPTY_PATH);
      check(ret, errno, "move_mount", target);
    },
    fsLog(fd) {
      const messages: string[] = [];
      const buf = new Uint8Array(FS_LOG_BUF_SIZE);
      // Each read returns one message; ENODATA once the queue is empty.
      for (;;) {
        const n = Number(libc.read(fd, buf, buf.byteLength));
        if (n <= 0) return messages;
        messages.push(decoder.decode(buf.subarray(0, n)).trimEnd());
      }
    },
    close(fd) {
      check(libc.close(fd), errno, "close");
    },
    rename2(from, to, flags) {
      const ret = libc.renameat2(AT_FDCWD, cstr(from, "renameat2"), AT_FDCWD, cstr(to, "renameat2"), flags);
      check(ret, errno, "renameat2", from);
    },
    loopAttach(file) {
      return attachLoop(libc, errno, cstr, addressOf, file);
    },
    readdirTypes(path) {
      return readdirFrom(check(libc.open(cstr(path, "open"), O_RDONLY_CLOEXEC, 0), errno, "open", path), path);
    },
    lreaddirTypes(path) {
      const fd = check(libc.open(cstr(path, "open"), O_RDONLY_CLOEXEC | O_DIRECTORY_NOFOLLOW, 0), errno, "open", path);
      return readdirFrom(fd, path);
    },
    openDir(path) {
      return check(libc.open(cstr(path, "open"), O_RDONLY_CLOEXEC | O_DIRECTORY_NOFOLLOW, 0), errno, "open", path);
    },
    openBeneath,
    openEntry(path, flags) {
      return check(libc.open(cstr(path, "open"), flags | O_RDONLY_CLOEXEC | O_NOFOLLOW, 0), errno, "open", path);
    },
    statAt(dirfd, name) {
      const buf = statxBuf;
      check(libc.statx(dirfd, cstr(name, "lstat"), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buf), errno, "lstat", name);
      return decodeStatx(buf);
    },
    readdirFd(fd) {
      const out: Dirent[] = [];
      // One buffer for every call: the call is synchronous and decodes before it returns.
      const buf = direntBuf;
      for (;;) {
        const n = check(libc.getdents64(fd, buf, buf.byteLength), errno, "getdents64");
        if (n === 0) return out;
        decodeDirents(buf.subarray(0, n), out);
      }
    },
    unlinkAt(dirfd, name, dir) {
      check(libc.unlinkat(dirfd, cstr(name, "unlinkat"), dir ? AT_REMOVEDIR : 0), errno, "unlinkat", name);
    },
    renameAt(fromDirfd, from, toDirfd, to, flags) {
      check(libc.renameat2(fromDirfd, cstr(from, "renameat2"), toDirfd, cstr(to, "renameat2"), flags), errno, "renameat2", from);
    },
    fsync(fd) {
      check(libc.fsync(fd), errno, "fsync");
    },
    syncfs(fd) {
      check(libc.syncfs(fd), errno, "syncfs");
    },
    createNew(path, mode) {
      return check(libc.open(cstr(path, "open"), O_CREATE_NEW, mode), errno, "open", path);
    },
    readInto(fd, buf) {
      return check(libc.read(fd, buf, buf.byteLength), errno, "read");
    },
    writeAll(fd, bytes) {
      for (let at = 0; at < bytes.byteLength; ) {
        const n = check(libc.write(fd, at === 0 ? bytes : bytes.subarray(at), bytes.byteLength - at), errno, "write");
        if (n === 0) throw new ErrnoError("write", EIO);
        at += n;
      }
    },
    copyRange(fromFd, toFd, len) {
      return check(libc.copy_file_range(fromFd, null, toFd, null, len, 0), errno, "copy_file_range");
    },
    fchown(fd, uid, gid) {
      check(libc.fchown(fd, uid >>> 0, gid >>> 0), errno, "fchown");
    },
    fchmod(fd, mode) {
      check(libc.fchmod(fd, mode), errno, "fchmod");
    },
    futimes(fd, atime, mtime) {
      check(libc.futimens(fd, encodeTimespecs(atime, mtime)), errno, "futimens");
    },
    fgetxattr(fd, name) {
      const n = cstr(name, "fgetxattr");
      const value = sized("fgetxattr", name, (buf, size) => libc.fgetxattr(fd, n, buf, size));
      return typeof value === "number" ? null : value;
    },
    flistxattr(fd) {
      const list = sized("flistxattr", `fd ${fd}`, (buf, size) => libc.flistxattr(fd, buf, size));
      return typeof list === "number" ? [] : splitXattrNames(list);
    },
    openAt(dirfd, name, flags) {
      return check(libc.openat(dirfd, cstr(name, "openat"), flags | O_RDONLY_CLOEXEC | O_NOFOLLOW, 0), errno, "openat", name);
    },
    fsetxattr(fd, name, value) {
      check(libc.fsetxattr(fd, cstr(name, "fsetxattr"), value, value.byteLength, 0), errno, "fsetxattr", name);
    },
    ...btrfsCalls(libc, errno, cstr, addressOf, O_RDONLY_CLOEXEC | O_DIRECTORY_NOFOLLOW),
  };
}
