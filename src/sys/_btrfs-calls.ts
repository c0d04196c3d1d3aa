/**
 * The btrfs half of `Sys`: subvolumes, snapshots, flags, filesystem info and qgroups, each one
 * ioctl on a directory opened with O_NOFOLLOW (a symlink where a subvolume is expected fails with
 * ELOOP/ENOTDIR instead of being followed). Struct layouts are in `_btrfs.ts`; pointers travel
 * in ioctl's integer argument as `addressOf` gives them, the buffer referenced across the call.
 */
import { ErrnoError } from "../core/errors.ts";
import {
  BTRFS_IOC, type BtrfsFsInfo, type BtrfsQgroup, type BtrfsQuotaStatus, SUBVOL_RDONLY, decodeFsInfo, decodeInoLookup,
  decodeQgroup, decodeQuotaStatus, decodeU64, encodeDestroyByIdArgs, encodeFsInfo, encodeInoLookup, encodeQgroupDestroy,
  encodeQgroupInfoSearch, encodeQgroupLimit, encodeQgroupLimitSearch, encodeQuotaStatusSearch, encodeSnapshotArgs,
  encodeU64, encodeVolArgs, withReadonly,
} from "./_btrfs.ts";

/** What the btrfs calls need from libc. */
export interface BtrfsLibc {
  open(path: Uint8Array, flags: number, mode: number): number | bigint;
  close(fd: number): number | bigint;
  ioctl(fd: number, request: number | bigint, arg: number | bigint): number | bigint;
}

const EINVAL = 22;
const ENOENT = 2;

/** The btrfs methods of `Sys` (documented there). */
export interface BtrfsSys {
  btrfsSubvolCreate(dir: string, name: string): void;
  btrfsSnapshot(source: string, dir: string, name: string, readonly: boolean): void;
  btrfsSubvolDestroy(dir: string, name: string): void;
  btrfsSubvolDestroyById(fsPath: string, subvolId: bigint): void;
  btrfsSubvolId(path: string): bigint;
  btrfsIsReadonly(path: string): boolean;
  btrfsSetReadonly(path: string, readonly: boolean): void;
  btrfsFsInfo(path: string): BtrfsFsInfo;
  btrfsQuotaStatus(path: string): BtrfsQuotaStatus | null;
  btrfsQgroupLimit(path: string, maxReferenced: bigint | null): void;
  btrfsQgroup(path: string, qgroupId: bigint): BtrfsQgroup | null;
  btrfsQgroupDestroy(path: string, qgroupId: bigint): void;
  btrfsSubvolIdFd(fd: number): bigint;
  btrfsSetReadonlyFd(fd: number, readonly: boolean): void;
  btrfsSubvolDestroyAt(dirfd: number, name: string): void;
}

/** The btrfs calls over one runtime's libc; `openFlags` opens a directory read-only, O_NOFOLLOW. */
export function btrfsCalls(
  libc: BtrfsLibc,
  errno: () => number,
  cstr: (s: string, syscall: string) => Uint8Array,
  addressOf: (buf: Uint8Array) => number | bigint,
  openFlags: number,
): BtrfsSys {
  const ok = (ret: number | bigint, syscall: string, path?: string): number => {
    if (ret === -1 || ret === -1n) throw new ErrnoError(syscall, errno(), path);
    return Number(ret);
  };
  /** `fn` on `path` opened as a directory, closed after. */
  const withDir = <T>(path: string, fn: (fd: number) => T): T => {
    const fd = ok(libc.open(cstr(path, "open"), openFlags, 0), "open", path);
    try {
      return fn(fd);
    } finally {
      libc.close(fd);
    }
  };
  const ioctl = (fd: number, request: number, buf: Uint8Array, what: string, path: string): void => {
    ok(libc.ioctl(fd, request, addressOf(buf)), `ioctl(${what})`, path);
  };
  const named = (args: Uint8Array | null, syscall: string, path: string): Uint8Array => {
    if (args === null) throw new ErrnoError(syscall, EINVAL, path);
    return args;
  };
  const search = (fd: number, args: Uint8Array, path: string): Uint8Array | null => {
    if (Number(libc.ioctl(fd, BTRFS_IOC.TREE_SEARCH, addressOf(args))) !== -1) return args;
    const err = errno();
    // No quota tree: quotas were never enabled (or were disabled).
    if (err === ENOENT) return null;
    throw new ErrnoError("ioctl(BTRFS_IOC_TREE_SEARCH)", err, path);
  };
  const getFlags = (fd: number, path: string): bigint => {
    const buf = new Uint8Array(8);
    ioctl(fd, BTRFS_IOC.SUBVOL_GETFLAGS, buf, "BTRFS_IOC_SUBVOL_GETFLAGS", path);
    return decodeU64(buf);
  };

  return {
    btrfsSubvolCreate(dir, name) {
      const args = named(encodeVolArgs(name), "ioctl(BTRFS_IOC_SUBVOL_CREATE)", `${dir}/${name}`);
      withDir(dir, (fd) => ioctl(fd, BTRFS_IOC.SUBVOL_CREATE, args, "BTRFS_IOC_SUBVOL_CREATE", `${dir}/${name}`));
    },
    btrfsSnapshot(source, dir, name, readonly) {
      withDir(source, (src) => {
        const args = named(encodeSnapshotArgs(src, name, readonly), "ioctl(BTRFS_IOC_SNAP_CREATE_V2)", `${dir}/${name}`);
        withDir(dir, (fd) => ioctl(fd, BTRFS_IOC.SNAP_CREATE_V2, args, "BTRFS_IOC_SNAP_CREATE_V2", `${dir}/${name}`));
      });
    },
    btrfsSubvolDestroy(dir, name) {
      const args = named(encodeVolArgs(name), "ioctl(BTRFS_IOC_SNAP_DESTROY)", `${dir}/${name}`);
      withDir(dir, (fd) => ioctl(fd, BTRFS_IOC.SNAP_DESTROY, args, "BTRFS_IOC_SNAP_DESTROY", `${dir}/${name}`));
    },
    btrfsSubvolDestroyById(fsPath, subvolId) {
      const args = encodeDestroyByIdArgs(subvolId);
      withDir(fsPath, (fd) => ioctl(fd, BTRFS_IOC.SNAP_DESTROY_V2, args, "BTRFS_IOC_SNAP_DESTROY_V2", `${fsPath} (subvolume ${subvolId})`));
    },
    btrfsSubvolId(path) {
      const args = encodeInoLookup();
      withDir(path, (fd) => ioctl(fd, BTRFS_IOC.INO_LOOKUP, args, "BTRFS_IOC_INO_LOOKUP", path));
      return decodeInoLookup(args);
    },
    btrfsIsReadonly(path) {
      return withDir(path, (fd) => (getFlags(fd, path) & SUBVOL_RDONLY) !== 0n);
    },
    btrfsSetReadonly(path, readonly) {
      withDir(path, (fd) => {
        const flags = getFlags(fd, path);
        const next = withReadonly(flags, readonly);
        if (next !== flags) ioctl(fd, BTRFS_IOC.SUBVOL_SETFLAGS, encodeU64(next), "BTRFS_IOC_SUBVOL_SETFLAGS", path);
      });
    },
    btrfsFsInfo(path) {
      const args = encodeFsInfo();
      withDir(path, (fd) => ioctl(fd, BTRFS_IOC.FS_INFO, args, "BTRFS_IOC_FS_INFO", path));
      return decodeFsInfo(args);
    },
    btrfsQuotaStatus(path) {
      return withDir(path, (fd) => {
        const found = search(fd, encodeQuotaStatusSearch(), path);
        return found === null ? null : decodeQuotaStatus(found);
      });
    },
    btrfsQgroupLimit(path, maxReferenced) {
      const args = encodeQgroupLimit(maxReferenced);
      withDir(path, (fd) => ioctl(fd, BTRFS_IOC.QGROUP_LIMIT, args, "BTRFS_IOC_QGROUP_LIMIT", path));
    },
    btrfsQgroup(path, qgroupId) {
      return withDir(path, (fd) => {
        const info = search(fd, encodeQgroupInfoSearch(qgroupId), path);
        const limit = search(fd, encodeQgroupLimitSearch(qgroupId), path);
        return info === null || limit === null ? null : decodeQgroup(info, limit);
      });
    },
    btrfsSubvolIdFd(fd) {
      const args = encodeInoLookup();
      ioctl(fd, BTRFS_IOC.INO_LOOKUP, args, "BTRFS_IOC_INO_LOOKUP", `fd ${fd}`);
      return decodeInoLookup(args);
    },
    btrfsSetReadonlyFd(fd, readonly) {
      const flags = getFlags(fd, `fd ${fd}`);
      const next = withReadonly(flags, readonly);
      if (next !== flags) ioctl(fd, BTRFS_IOC.SUBVOL_SETFLAGS, encodeU64(next), "BTRFS_IOC_SUBVOL_SETFLAGS", `fd ${fd}`);
    },
    btrfsSubvolDestroyAt(dirfd, name) {
      const args = named(encodeVolArgs(name), "ioctl(BTRFS_IOC_SNAP_DESTROY)", name);
      ioctl(dirfd, BTRFS_IOC.SNAP_DESTROY, args, "BTRFS_IOC_SNAP_DESTROY", name);
    },
    btrfsQgroupDestroy(path, qgroupId) {
      const args = encodeQgroupDestroy(qgroupId);
      withDir(path, (fd) => ioctl(fd, BTRFS_IOC.QGROUP_CREATE, args, "BTRFS_IOC_QGROUP_CREATE", path));
    },
  };
}
