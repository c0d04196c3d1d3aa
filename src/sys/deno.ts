/**
 * `Sys` over `Deno.dlopen`. Only the symbol table and the errno reader live here; everything the
 * calls mean is in `_common.ts`, shared with the Bun adapter.
 */
import { ErrnoError } from "../core/errors.ts";
import { libcSys, type SysOptions } from "./_common.ts";
import type { Sys } from "./types.ts";

// "buffer" parameters take a Uint8Array (Deno passes its data pointer, honouring byteOffset) or null.
// "isize" results come back as bigint; `check` normalises them.
const SYMBOLS = {
  /** int *__errno_location(void) */
  __errno_location: { parameters: [], result: "pointer" },
  /** int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data) */
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  /** int umount2(const char *target, int flags) */
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  /** int statfs(const char *path, struct statfs *buf) */
  statfs: { parameters: ["buffer", "buffer"], result: "i32" },
  /** int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) */
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  /** int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev) */
  mknodat: { parameters: ["i32", "buffer", "u32", "u64"], result: "i32" },
  /** int fchownat(int dirfd, const char *path, uid_t owner, gid_t group, int flags) */
  fchownat: { parameters: ["i32", "buffer", "u32", "u32", "i32"], result: "i32" },
  /** int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags) */
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  /** int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags) */
  lsetxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  /** ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size) */
  lgetxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "isize" },
  /** ssize_t llistxattr(const char *path, char *list, size_t size) */
  llistxattr: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  /** int lremovexattr(const char *path, const char *name) */
  lremovexattr: { parameters: ["buffer", "buffer"], result: "i32" },
  // ioctl is variadic; on x86_64 and aarch64 Linux an integer vararg travels exactly like a fixed one.
  /** int ioctl(int fd, unsigned long request, ...) — called as (int, unsigned long, long) */
  ioctl: { parameters: ["i32", "u64", "i64"], result: "i32" },
  /** int fsopen(const char *fsname, unsigned int flags) */
  fsopen: { parameters: ["buffer", "u32"], result: "i32" },
  /** int fsconfig(int fd, unsigned int cmd, const char *key, const void *value, int aux) */
  fsconfig: { parameters: ["i32", "u32", "buffer", "buffer", "i32"], result: "i32" },
  /** int fsmount(int fd, unsigned int flags, unsigned int attr_flags) */
  fsmount: { parameters: ["i32", "u32", "u32"], result: "i32" },
  /** int move_mount(int from_dirfd, const char *from_path, int to_dirfd, const char *to_path, unsigned int flags) */
  move_mount: { parameters: ["i32", "buffer", "i32", "buffer", "u32"], result: "i32" },
  /** int close(int fd) */
  close: { parameters: ["i32"], result: "i32" },
  /** ssize_t read(int fd, void *buf, size_t count) */
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) */
  renameat2: { parameters: ["i32", "buffer", "i32", "buffer", "u32"], result: "i32" },
  // open is variadic; the mode vararg travels like a fixed int on x86_64 and aarch64 Linux.
  /** int open(const char *path, int flags, ...) — called as (const char *, int, mode_t) */
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  /** ssize_t getdents64(int fd, void *dirp, size_t count) */
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // syscall is variadic; integer and pointer varargs travel like fixed ones on x86_64 and aarch64 Linux.
  /** long syscall(long number, ...) — called as (SYS_openat2, int dirfd, const char *path, struct open_how *how, size_t size) */
  syscall: { parameters: ["i64", "i64", "buffer", "buffer", "usize"], result: "i64" },
  // openat is variadic like open.
  /** int openat(int dirfd, const char *path, int flags, ...) — called as (int, const char *, int, mode_t) */
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  /** int unlinkat(int dirfd, const char *path, int flags) */
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** int fsync(int fd) */
  fsync: { parameters: ["i32"], result: "i32" },
  /** int syncfs(int fd) */
  syncfs: { parameters: ["i32"], result: "i32" },
  /** ssize_t write(int fd, const void *buf, size_t count) */
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** int fchown(int fd, uid_t owner, gid_t group) */
  fchown: { parameters: ["i32", "u32", "u32"], result: "i32" },
  /** int fchmod(int fd, mode_t mode) */
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  /** int futimens(int fd, const struct timespec times[2]) */
  futimens: { parameters: ["i32", "buffer"], result: "i32" },
  /** int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags) */
  fsetxattr: { parameters: ["i32", "buffer", "buffer", "usize", "i32"], result: "i32" },
  /** ssize_t fgetxattr(int fd, const char *name, void *value, size_t size) */
  fgetxattr: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
  /** ssize_t flistxattr(int fd, char *list, size_t size) */
  flistxattr: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** ssize_t copy_file_range(int fd_in, off64_t *off_in, int fd_out, off64_t *off_out, size_t len, unsigned int flags) */
  copy_file_range: { parameters: ["i32", "buffer", "i32", "buffer", "usize", "u32"], result: "isize" },
  /** fsync on Deno's FFI thread pool: the promise settles when it returns (errno stays on that thread). */
  fsync_nonblocking: { name: "fsync", parameters: ["i32"], result: "i32", nonblocking: true },
  /** syncfs, likewise. */
  syncfs_nonblocking: { name: "syncfs", parameters: ["i32"], result: "i32", nonblocking: true },
} as const satisfies Deno.ForeignLibraryInterface;

/**
 * Open libc through `Deno.dlopen` (needs the "ffi" unstable flag, set in deno.json).
 * @example
 * const sys = createSys();
 * sys.mount("tmpfs", "/mnt/x", "tmpfs", 0, "size=1m");
 */
export function createSys(options: SysOptions = {}): Sys {
  const lib = Deno.dlopen("libc.so.6", SYMBOLS);
  const { __errno_location, fsync_nonblocking, syncfs_nonblocking, ...libc } = lib.symbols;
  // errno is thread-local: ask for its address at read time rather than caching one thread's.
  // glibc never returns NULL here.
  const sys = libcSys(
    "deno",
    libc,
    () => new Deno.UnsafePointerView(__errno_location()!).getInt32(),
    (buf) => Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf as Uint8Array<ArrayBuffer>)),
    options,
  );
  const syncAsync = async (fd: number, whole: boolean): Promise<void> => {
    if ((await (whole ? syncfs_nonblocking(fd) : fsync_nonblocking(fd))) !== -1) return;
    // The errno of a call on the pool's thread cannot be read here: ask again on this one, which
    // names the error (EBADF, EIO) unless the writeback error was already reported and cleared.
    if (whole) sys.syncfs(fd);
    else sys.fsync(fd);
    throw new ErrnoError(whole ? "syncfs" : "fsync", EIO);
  };
  return { ...sys, syncAsync };
}

/** What a failed sync reports when the kernel no longer says why: an I/O error. */
const EIO = 5;
