/**
 * `Sys` over `bun:ffi`. Only the symbol table and the errno reader live here; everything the
 * calls mean is in `_common.ts`, shared with the Deno adapter.
 */
import { FFIType, dlopen, ptr, read } from "bun:ffi";
import { ErrnoError } from "../core/errors.ts";
import { libcSys, type SysOptions } from "./_common.ts";
import type { Sys } from "./types.ts";

// "ptr" parameters take a Uint8Array (Bun passes its data pointer, honouring byteOffset) or null.
// ssize_t results are "i64_fast": a plain number when it fits, so no BigInt is allocated (and no GC
// can run) between the call and the errno read.
const SYMBOLS = {
  /** int *__errno_location(void) */
  __errno_location: { args: [], returns: "ptr" },
  /** int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data) */
  mount: { args: ["ptr", "ptr", "ptr", "u64", "ptr"], returns: "i32" },
  /** int umount2(const char *target, int flags) */
  umount2: { args: ["ptr", "i32"], returns: "i32" },
  /** int statfs(const char *path, struct statfs *buf) */
  statfs: { args: ["ptr", "ptr"], returns: "i32" },
  /** int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) */
  statx: { args: ["i32", "ptr", "i32", "u32", "ptr"], returns: "i32" },
  /** int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev) */
  mknodat: { args: ["i32", "ptr", "u32", "u64"], returns: "i32" },
  /** int fchownat(int dirfd, const char *path, uid_t owner, gid_t group, int flags) */
  fchownat: { args: ["i32", "ptr", "u32", "u32", "i32"], returns: "i32" },
  /** int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags) */
  utimensat: { args: ["i32", "ptr", "ptr", "i32"], returns: "i32" },
  /** int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags) */
  lsetxattr: { args: ["ptr", "ptr", "ptr", "u64", "i32"], returns: "i32" },
  /** ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size) */
  lgetxattr: { args: ["ptr", "ptr", "ptr", "u64"], returns: FFIType.i64_fast },
  /** ssize_t llistxattr(const char *path, char *list, size_t size) */
  llistxattr: { args: ["ptr", "ptr", "u64"], returns: FFIType.i64_fast },
  /** int lremovexattr(const char *path, const char *name) */
  lremovexattr: { args: ["ptr", "ptr"], returns: "i32" },
  // ioctl is variadic; on x86_64 and aarch64 Linux an integer vararg travels exactly like a fixed one.
  /** int ioctl(int fd, unsigned long request, ...) — called as (int, unsigned long, long) */
  ioctl: { args: ["i32", "u64", "i64"], returns: "i32" },
  /** int fsopen(const char *fsname, unsigned int flags) */
  fsopen: { args: ["ptr", "u32"], returns: "i32" },
  /** int fsconfig(int fd, unsigned int cmd, const char *key, const void *value, int aux) */
  fsconfig: { args: ["i32", "u32", "ptr", "ptr", "i32"], returns: "i32" },
  /** int fsmount(int fd, unsigned int flags, unsigned int attr_flags) */
  fsmount: { args: ["i32", "u32", "u32"], returns: "i32" },
  /** int move_mount(int from_dirfd, const char *from_path, int to_dirfd, const char *to_path, unsigned int flags) */
  move_mount: { args: ["i32", "ptr", "i32", "ptr", "u32"], returns: "i32" },
  /** int close(int fd) */
  close: { args: ["i32"], returns: "i32" },
  /** ssize_t read(int fd, void *buf, size_t count) */
  read: { args: ["i32", "ptr", "u64"], returns: FFIType.i64_fast },
  /** int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) */
  renameat2: { args: ["i32", "ptr", "i32", "ptr", "u32"], returns: "i32" },
  // open is variadic; the mode vararg travels like a fixed int on x86_64 and aarch64 Linux.
  /** int open(const char *path, int flags, ...) — called as (const char *, int, mode_t) */
  open: { args: ["ptr", "i32", "u32"], returns: "i32" },
  /** ssize_t getdents64(int fd, void *dirp, size_t count) */
  getdents64: { args: ["i32", "ptr", "u64"], returns: FFIType.i64_fast },
  // syscall is variadic; integer and pointer varargs travel like fixed ones on x86_64 and aarch64 Linux.
  /** long syscall(long number, ...) — called as (SYS_openat2, int dirfd, const char *path, struct open_how *how, size_t size) */
  syscall: { args: ["i64", "i64", "ptr", "ptr", "u64"], returns: FFIType.i64_fast },
  // openat is variadic like open.
  /** int openat(int dirfd, const char *path, int flags, ...) — called as (int, const char *, int, mode_t) */
  openat: { args: ["i32", "ptr", "i32", "u32"], returns: "i32" },
  /** int unlinkat(int dirfd, const char *path, int flags) */
  unlinkat: { args: ["i32", "ptr", "i32"], returns: "i32" },
  /** int fsync(int fd) */
  fsync: { args: ["i32"], returns: "i32" },
  /** int syncfs(int fd) */
  syncfs: { args: ["i32"], returns: "i32" },
  /** ssize_t write(int fd, const void *buf, size_t count) */
  write: { args: ["i32", "ptr", "u64"], returns: FFIType.i64_fast },
  /** int fchown(int fd, uid_t owner, gid_t group) */
  fchown: { args: ["i32", "u32", "u32"], returns: "i32" },
  /** int fchmod(int fd, mode_t mode) */
  fchmod: { args: ["i32", "u32"], returns: "i32" },
  /** int futimens(int fd, const struct timespec times[2]) */
  futimens: { args: ["i32", "ptr"], returns: "i32" },
  /** int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags) */
  fsetxattr: { args: ["i32", "ptr", "ptr", "u64", "i32"], returns: "i32" },
  /** ssize_t fgetxattr(int fd, const char *name, void *value, size_t size) */
  fgetxattr: { args: ["i32", "ptr", "ptr", "u64"], returns: FFIType.i64_fast },
  /** ssize_t flistxattr(int fd, char *list, size_t size) */
  flistxattr: { args: ["i32", "ptr", "u64"], returns: FFIType.i64_fast },
  /** ssize_t copy_file_range(int fd_in, off64_t *off_in, int fd_out, off64_t *off_out, size_t len, unsigned int flags) */
  copy_file_range: { args: ["i32", "ptr", "i32", "ptr", "u64", "u32"], returns: FFIType.i64_fast },
} as const;

/**
 * Open libc through `bun:ffi`.
 * @example
 * const sys = createSys();
 * sys.mount("tmpfs", "/mnt/x", "tmpfs", 0, "size=1m");
 */
export function createSys(options: SysOptions = {}): Sys {
  const lib = dlopen("libc.so.6", SYMBOLS);
  const { __errno_location, ...libc } = lib.symbols;
  // errno is thread-local: ask for its address at read time rather than caching one thread's.
  // glibc never returns NULL here.
  const sys = libcSys("bun", libc, () => read.i32(__errno_location()!, 0), (buf) => ptr(buf), options);
  return { ...sys, syncAsync: syncOffThread };
}

/**
 * The sync worker's module. compile.sh builds it into the binary as a second entry point, where
 * every module shares the bundle's URL and entry points keep their place below src/.
 */
const WORKER_URL = import.meta.url.startsWith("file:///$bunfs/")
  ? new URL("./sys/_sync-worker.bun.ts", import.meta.url).href
  : new URL("./_sync-worker.bun.ts", import.meta.url).href;
/** What a sync reports when its worker could not run it. */
const EIO = 5;
/** Calls waiting for the sync worker, by id. */
const pending = new Map<number, { resolve: () => void; reject: (err: Error) => void; whole: boolean }>();
/** Bun's Worker: ref/unref say whether it keeps the process alive (it must not while idle). */
type BunWorker = Worker & { ref(): void; unref(): void };
let worker: BunWorker | null = null;
let nextId = 0;

/** fsync/syncfs in `_sync-worker.bun.ts` (bun:ffi calls block their thread; a worker's thread is not the loop's). */
function syncOffThread(fd: number, whole: boolean): Promise<void> {
  if (worker === null) {
    worker = new Worker(WORKER_URL) as BunWorker;
    worker.onmessage = (event: MessageEvent<{ id: number; errno: number }>) => {
      const call = pending.get(event.data.id);
      if (call === undefined) return;
      pending.delete(event.data.id);
      if (event.data.errno === 0) call.resolve();
      else call.reject(new ErrnoError(call.whole ? "syncfs" : "fsync", event.data.errno));
      if (pending.size === 0) worker!.unref();
    };
    // A worker that cannot start (not built into the binary) fails every call waiting on it, loudly.
    worker.onerror = (event: ErrorEvent) => {
      const err = new ErrnoError("sync worker", EIO, event.message);
      for (const call of pending.values()) call.reject(err);
      pending.clear();
      worker = null;
    };
  }
  const id = ++nextId;
  worker.ref();
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, whole });
    worker!.postMessage({ id, fd, whole });
  });
}
