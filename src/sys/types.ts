/**
 * The runtime-neutral view of the libc calls strata needs. `bun.ts` and `deno.ts` implement it
 * through FFI; nothing else in the project touches `bun:ffi` or `Deno.dlopen`.
 *
 * Every call is synchronous and reads errno right after the C call; a failure throws
 * `ErrnoError(syscall, errno, path)` from `../errors.ts`, never returns -1.
 */

/** Seconds and nanoseconds, as `struct timespec`. */
export interface Timespec {
  sec: number;
  nsec: number;
}

/** The fields of `struct statfs` strata uses. */
export interface StatFs {
  /** Filesystem magic (`f_type`), e.g. 0xEF53 for ext4. */
  type: number;
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}

/** What `lstat` reports, from statx(2): nanosecond times on every runtime (Deno's fs rounds to ms). */
export interface Stat {
  /** st_mode: type bits and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** 512-byte blocks allocated (stx_blocks). */
  blocks: number;
  nlink: number;
  ino: bigint;
  rdevMajor: number;
  rdevMinor: number;
  atime: Timespec;
  mtime: Timespec;
}

/** mount(2) flags used by strata. */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  REMOUNT: 0x20,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
} as const;

/** umount2(2) flags. */
export const MNT = { FORCE: 1, DETACH: 2, EXPIRE: 4, NOFOLLOW: 8 } as const;

/** fsmount(2) mount attributes (`MOUNT_ATTR_*`). */
export const MOUNT_ATTR = { RDONLY: 0x1, NOSUID: 0x2, NODEV: 0x4, NOEXEC: 0x8 } as const;

/** open(2) flags `openBeneath` takes (O_NOFOLLOW and O_CLOEXEC it always adds). */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  NONBLOCK: 0o4000,
  /** 0o200000 on x86_64, 0o40000 on the asm-generic architectures such as aarch64. */
  DIRECTORY: (typeof process !== "undefined" && process.arch === "x64") ? 0o200000 : 0o40000,
  PATH: 0o10000000,
} as const;

/** renameat2(2) flags. */
export const RENAME = { NOREPLACE: 1, EXCHANGE: 2, WHITEOUT: 4 } as const;

/** `d_type` values of a directory entry; UNKNOWN means the filesystem does not fill it in. */
export const DT = { UNKNOWN: 0, FIFO: 1, CHR: 2, DIR: 4, BLK: 6, REG: 8, LNK: 10, SOCK: 12 } as const;

/** One entry as getdents64 returns it. */
export interface Dirent {
  name: string;
  /** One of `DT`. */
  type: number;
  ino: bigint;
}

/** A loop device bound to a file; `fd` holds it until the caller mounts it and closes the fd. */
export interface LoopDevice {
  /** `/dev/loopN`. */
  device: string;
  fd: number;
}

export type { BtrfsFsInfo, BtrfsQgroup, BtrfsQuotaStatus } from "./_btrfs.ts";
import type { BtrfsFsInfo, BtrfsQgroup, BtrfsQuotaStatus } from "./_btrfs.ts";

/** The libc surface strata uses. */
export interface Sys {
  /** Which runtime's FFI backs this instance ("bun" or "deno"). */
  readonly runtime: string;
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount2(target: string, flags: number): void;
  statfs(path: string): StatFs;
  /** statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS): the entry itself, never a symlink's target. */
  lstat(path: string): Stat;
  /** mknodat(AT_FDCWD, path, mode, makedev(major, minor)); mode includes the S_IF* type bits. */
  mknod(path: string, mode: number, major: number, minor: number): void;
  /** fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW): changes a symlink itself. */
  lchown(path: string, uid: number, gid: number): void;
  /** utimensat(AT_FDCWD, path, [atime, mtime], AT_SYMLINK_NOFOLLOW): nanosecond times, symlinks too. */
  lutimes(path: string, atime: Timespec, mtime: Timespec): void;
  lsetxattr(path: string, name: string, value: Uint8Array): void;
  /** The value, or null when the attribute is absent (ENODATA) or unsupported (ENOTSUP). */
  lgetxattr(path: string, name: string): Uint8Array | null;
  /** Attribute names; empty when the filesystem has none or does not support them. */
  llistxattr(path: string): string[];
  lremovexattr(path: string, name: string): void;
  /** ioctl(dst, FICLONE, src): share extents. Throws ErrnoError (EOPNOTSUPP, EXDEV, EINVAL…) when not possible. */
  ficlone(srcFd: number, dstFd: number): void;
  /** fsopen(fsname, FSOPEN_CLOEXEC): a new filesystem context of the new mount API (Linux 5.2). */
  fsopen(fsname: string): number;
  /** fsconfig(fd, FSCONFIG_SET_STRING, key, value, 0); FSCONFIG_SET_FLAG when `value` is null. */
  fsconfig(fd: number, key: string, value: string | null): void;
  /** fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0): build the superblock from the options set so far. */
  fsconfigCreate(fd: number): void;
  /** fsmount(fd, FSMOUNT_CLOEXEC, attrs): a detached mount of a created context, as an fd; attrs from `MOUNT_ATTR`. */
  fsmount(fd: number, attrs: number): number;
  /** move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH): attach a detached mount at `target`. */
  moveMount(fd: number, target: string): void;
  /** Drain the messages the kernel queued on a filesystem context ("e overlay: too many lower directories, limit is 500"). */
  fsLog(fd: number): string[];
  /** close(2). */
  close(fd: number): void;
  /** renameat2(AT_FDCWD, from, AT_FDCWD, to, flags), flags from `RENAME` (EXCHANGE swaps two paths atomically). */
  rename2(from: string, to: string, flags: number): void;
  /**
   * Bind `file` to a free loop device with LO_FLAGS_AUTOCLEAR (LOOP_CONFIGURE, Linux 5.8): the device
   * detaches itself once the returned fd is closed and no mount uses it.
   */
  loopAttach(file: string): LoopDevice;
  /** The entries of a directory with their `d_type`, straight from getdents64, unsorted, without "." and "..". */
  readdirTypes(path: string): Dirent[];
  /**
   * `readdirTypes` opened with O_NOFOLLOW | O_DIRECTORY: ENOTDIR when `path` itself is a symlink
   * (as for any other non-directory), so a walk never lists a directory through a link.
   */
  lreaddirTypes(path: string): Dirent[];
  /** open(path, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC): a directory fd to resolve beneath; ENOTDIR/ELOOP for anything else. */
  openDir(path: string): number;
  /**
   * openat2(dirfd, path, flags | O_NOFOLLOW | O_CLOEXEC, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
   * RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): `path` opened only if it lies below `dirfd` without a
   * symlink or a mount crossing on the way (ELOOP, EXDEV otherwise); flags from `O`. Where openat2
   * is missing (Linux < 5.6), one O_NOFOLLOW openat per component.
   */
  openBeneath(dirfd: number, path: string, flags: number): number;
  /** open(path, flags | O_NOFOLLOW | O_CLOEXEC): the entry itself (ELOOP for a symlink), flags from `O`. */
  openEntry(path: string, flags: number): number;
  /** statx(dirfd, name, AT_SYMLINK_NOFOLLOW): the entry itself, resolved below an open directory. */
  statAt(dirfd: number, name: string): Stat;
  /** Every entry left to read in the directory open as `fd` (which stays open), without "." and "..". */
  readdirFd(fd: number): Dirent[];
  /** unlinkat(dirfd, name, dir ? AT_REMOVEDIR : 0): removes the entry itself, a symlink as a link. */
  unlinkAt(dirfd: number, name: string, dir: boolean): void;
  /** renameat2(fromDirfd, from, toDirfd, to, flags), flags from `RENAME`. */
  renameAt(fromDirfd: number, from: string, toDirfd: number, to: string, flags: number): void;
  /** fsync(2). */
  fsync(fd: number): void;
  /**
   * open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode): a new regular file;
   * EEXIST when anything (a symlink included) is at `path`.
   */
  createNew(path: string, mode: number): number;
  /** read(2) once into `buf`: the bytes read, 0 at end of file. */
  readInto(fd: number, buf: Uint8Array): number;
  /** write(2) until all of `bytes` is written. */
  writeAll(fd: number, bytes: Uint8Array): void;
  /**
   * copy_file_range(2) of up to `len` bytes from the current offset of `fromFd` to that of `toFd`,
   * in the kernel (a reflink where the filesystem shares extents); the bytes copied, 0 at the end.
   */
  copyRange(fromFd: number, toFd: number, len: number): number;
  /** fchown(2). */
  fchown(fd: number, uid: number, gid: number): void;
  /** fchmod(2): permission bits incl. setuid/setgid/sticky. */
  fchmod(fd: number, mode: number): void;
  /** futimens(2): nanosecond atime and mtime. */
  futimes(fd: number, atime: Timespec, mtime: Timespec): void;
  /** fsetxattr(2). */
  fsetxattr(fd: number, name: string, value: Uint8Array): void;
  /** fgetxattr(2): the value, or null when absent (ENODATA) or unsupported (ENOTSUP). */
  fgetxattr(fd: number, name: string): Uint8Array | null;
  /** flistxattr(2): attribute names; empty when there are none or they are unsupported. */
  flistxattr(fd: number): string[];
  /**
   * openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW): the entry `name` of the open directory
   * `dirfd` itself (ELOOP for a symlink), without resolving any path.
   */
  openAt(dirfd: number, name: string, flags: number): number;
  /** syncfs(2): write back every dirty page of the filesystem `fd` is on. */
  syncfs(fd: number): void;
  /**
   * syncfs(2) (`whole`) or fsync(2) of `fd` on another thread, so a long writeback never stalls the
   * event loop; rejects with ErrnoError. `fd` must stay open until it settles.
   */
  syncAsync(fd: number, whole: boolean): Promise<void>;

  // btrfs (src/sys/_btrfs-calls.ts): each an ioctl on a directory opened O_NOFOLLOW.
  /** BTRFS_IOC_SUBVOL_CREATE: a new empty subvolume `dir/name`. */
  btrfsSubvolCreate(dir: string, name: string): void;
  /** BTRFS_IOC_SNAP_CREATE_V2: `dir/name` becomes a snapshot of the subvolume `source`, read-only when asked. */
  btrfsSnapshot(source: string, dir: string, name: string, readonly: boolean): void;
  /** BTRFS_IOC_SNAP_DESTROY: delete the subvolume `dir/name` (ENOTEMPTY while it holds other subvolumes). */
  btrfsSubvolDestroy(dir: string, name: string): void;
  /** BTRFS_IOC_SNAP_DESTROY_V2 by id, on any directory of the filesystem. */
  btrfsSubvolDestroyById(fsPath: string, subvolId: bigint): void;
  /** BTRFS_IOC_INO_LOOKUP: the id of the subvolume holding `path` (its qgroup is 0/id). */
  btrfsSubvolId(path: string): bigint;
  /** BTRFS_IOC_SUBVOL_GETFLAGS: whether the subvolume `path` is read-only. */
  btrfsIsReadonly(path: string): boolean;
  /** BTRFS_IOC_SUBVOL_SETFLAGS: set or clear the read-only flag of the subvolume `path`. */
  btrfsSetReadonly(path: string, readonly: boolean): void;
  /** BTRFS_IOC_FS_INFO of the filesystem holding `path`. */
  btrfsFsInfo(path: string): BtrfsFsInfo;
  /** The quota status item (BTRFS_IOC_TREE_SEARCH of the quota tree); null when quotas are off. */
  btrfsQuotaStatus(path: string): BtrfsQuotaStatus | null;
  /** BTRFS_IOC_QGROUP_LIMIT: limit the referenced bytes of the subvolume `path` (null: no limit). */
  btrfsQgroupLimit(path: string, maxReferenced: bigint | null): void;
  /** The accounting and limit of qgroup `qgroupId` (TREE_SEARCH); null when quotas are off or it has none. */
  btrfsQgroup(path: string, qgroupId: bigint): BtrfsQgroup | null;
  /** BTRFS_IOC_QGROUP_CREATE with create = 0: delete qgroup `qgroupId`. */
  btrfsQgroupDestroy(path: string, qgroupId: bigint): void;
  /** BTRFS_IOC_INO_LOOKUP on an open directory: the id of the subvolume it is in. */
  btrfsSubvolIdFd(fd: number): bigint;
  /** `btrfsSetReadonly` of the subvolume whose root is open as `fd`. */
  btrfsSetReadonlyFd(fd: number, readonly: boolean): void;
  /** BTRFS_IOC_SNAP_DESTROY of the entry `name` of the directory open as `dirfd`. */
  btrfsSubvolDestroyAt(dirfd: number, name: string): void;
}
