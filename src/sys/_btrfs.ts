/**
 * btrfs ioctl numbers and struct layouts (<linux/btrfs.h>, <linux/btrfs_tree.h>) as pure
 * encode/decode functions: no FFI here, so every layout is unit-tested without a btrfs
 * filesystem. The calls themselves are in `_btrfs-calls.ts`. All structs are little-endian
 * with natural alignment, identical on x86_64 and aarch64.
 */

/** `BTRFS_IOCTL_MAGIC`. */
const MAGIC = 0x94;
const IOC_WRITE = 1;
const IOC_READ = 2;

/** Linux's `_IOC(dir, type, nr, size)`. */
export function ioc(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}

/** `sizeof(struct btrfs_ioctl_vol_args)`: an s64 fd and a 4088-byte name. */
export const VOL_ARGS_SIZE = 4096;
/** `sizeof(struct btrfs_ioctl_vol_args_v2)`. */
export const VOL_ARGS_V2_SIZE = 4096;
/** Where the name starts in `btrfs_ioctl_vol_args_v2` (fd, transid, flags, a 32-byte union). */
const V2_NAME_OFFSET = 56;
/** `BTRFS_SUBVOL_NAME_MAX`: the longest name vol_args_v2 carries. */
const V2_NAME_MAX = 4039;
/** `BTRFS_PATH_NAME_MAX`: the longest name vol_args carries. */
const V1_NAME_MAX = 4087;
/** `sizeof(struct btrfs_ioctl_search_args)`: a 104-byte key and a 3992-byte result buffer. */
export const SEARCH_ARGS_SIZE = 4096;
/** `sizeof(struct btrfs_ioctl_search_key)`. */
const SEARCH_KEY_SIZE = 104;
/** `sizeof(struct btrfs_ioctl_search_header)`. */
const SEARCH_HEADER_SIZE = 32;
/** `sizeof(struct btrfs_ioctl_ino_lookup_args)`. */
export const INO_LOOKUP_SIZE = 4096;
/** `sizeof(struct btrfs_ioctl_fs_info_args)`. */
export const FS_INFO_SIZE = 1024;
/** `sizeof(struct btrfs_ioctl_qgroup_limit_args)`: qgroupid and a `struct btrfs_qgroup_limit`. */
export const QGROUP_LIMIT_SIZE = 48;
/** `sizeof(struct btrfs_ioctl_qgroup_create_args)`. */
export const QGROUP_CREATE_SIZE = 16;

/** The btrfs ioctls strata uses. */
export const BTRFS_IOC = {
  SNAP_DESTROY: ioc(IOC_WRITE, MAGIC, 15, VOL_ARGS_SIZE),
  SUBVOL_CREATE: ioc(IOC_WRITE, MAGIC, 14, VOL_ARGS_SIZE),
  TREE_SEARCH: ioc(IOC_READ | IOC_WRITE, MAGIC, 17, SEARCH_ARGS_SIZE),
  INO_LOOKUP: ioc(IOC_READ | IOC_WRITE, MAGIC, 18, INO_LOOKUP_SIZE),
  SNAP_CREATE_V2: ioc(IOC_WRITE, MAGIC, 23, VOL_ARGS_V2_SIZE),
  SUBVOL_GETFLAGS: ioc(IOC_READ, MAGIC, 25, 8),
  SUBVOL_SETFLAGS: ioc(IOC_WRITE, MAGIC, 26, 8),
  FS_INFO: ioc(IOC_READ, MAGIC, 31, FS_INFO_SIZE),
  QGROUP_CREATE: ioc(IOC_WRITE, MAGIC, 42, QGROUP_CREATE_SIZE),
  // The kernel declares QGROUP_LIMIT as _IOR although it only reads the struct.
  QGROUP_LIMIT: ioc(IOC_READ, MAGIC, 43, QGROUP_LIMIT_SIZE),
  SNAP_DESTROY_V2: ioc(IOC_WRITE, MAGIC, 63, VOL_ARGS_V2_SIZE),
} as const;

/** `BTRFS_SUBVOL_RDONLY`: the read-only flag of a subvolume and of SNAP_CREATE_V2. */
export const SUBVOL_RDONLY = 1n << 1n;
/** `BTRFS_SUBVOL_SPEC_BY_ID`: SNAP_DESTROY_V2 names the subvolume by id. */
export const SUBVOL_SPEC_BY_ID = 1n << 4n;
/** `BTRFS_FIRST_FREE_OBJECTID`: the inode number of every subvolume's root directory. */
export const FIRST_FREE_OBJECTID = 256n;
/** The inode number of the empty directory a snapshot shows where its source held a nested subvolume. */
export const EMPTY_SUBVOL_DIR_OBJECTID = 2n;
/** `BTRFS_QUOTA_TREE_OBJECTID`. */
const QUOTA_TREE_OBJECTID = 8n;
/** Item types of the quota tree. */
const QGROUP_STATUS_KEY = 240;
const QGROUP_INFO_KEY = 242;
const QGROUP_LIMIT_KEY = 244;
/** `BTRFS_QGROUP_LIMIT_MAX_RFER`. */
const LIMIT_MAX_RFER = 1n;
/** `BTRFS_FS_INFO_FLAG_CSUM_INFO | BTRFS_FS_INFO_FLAG_GENERATION`: ask FS_INFO for those fields. */
const FS_INFO_FLAGS = 1n | 2n;
/** `BTRFS_QGROUP_STATUS_FLAG_*`. */
const STATUS_ON = 1n;
const STATUS_RESCAN = 2n;
const STATUS_INCONSISTENT = 4n;
const STATUS_SIMPLE = 8n;
const U64_MAX = (1n << 64n) - 1n;

/** The checksum algorithms of `csum_type`. */
const CSUM_NAMES = ["crc32c", "xxhash64", "sha256", "blake2b"];

const encoder = new TextEncoder();

/** The bytes of one path component for a vol_args name; null when it is not one component that fits. */
function _name(name: string, max: number): Uint8Array | null {
  const bytes = encoder.encode(name);
  if (bytes.byteLength === 0 || bytes.byteLength > max || name.includes("/") || name.includes("\0") || name === "." || name === "..") return null;
  return bytes;
}

function _view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * A `btrfs_ioctl_vol_args` naming `name` (SUBVOL_CREATE, SNAP_DESTROY); null for a name that is
 * not one path component of at most 4087 bytes.
 * @example
 * encodeVolArgs("layer")!.byteLength; // 4096
 */
export function encodeVolArgs(name: string): Uint8Array | null {
  const bytes = _name(name, V1_NAME_MAX);
  if (bytes === null) return null;
  const buf = new Uint8Array(VOL_ARGS_SIZE);
  buf.set(bytes, 8);
  return buf;
}

/**
 * A `btrfs_ioctl_vol_args_v2` for SNAP_CREATE_V2: snapshot the subvolume open as `sourceFd` to
 * `name`, read-only when asked; null for a bad name.
 * @example
 * encodeSnapshotArgs(5, "child", true)!.byteLength; // 4096
 */
export function encodeSnapshotArgs(sourceFd: number, name: string, readonly: boolean): Uint8Array | null {
  const bytes = _name(name, V2_NAME_MAX);
  if (bytes === null) return null;
  const buf = new Uint8Array(VOL_ARGS_V2_SIZE);
  const view = _view(buf);
  view.setBigInt64(0, BigInt(sourceFd), true);
  view.setBigUint64(16, readonly ? SUBVOL_RDONLY : 0n, true);
  buf.set(bytes, V2_NAME_OFFSET);
  return buf;
}

/** A `btrfs_ioctl_vol_args_v2` for SNAP_DESTROY_V2 naming the subvolume by id. */
export function encodeDestroyByIdArgs(subvolId: bigint): Uint8Array {
  const buf = new Uint8Array(VOL_ARGS_V2_SIZE);
  const view = _view(buf);
  view.setBigUint64(16, SUBVOL_SPEC_BY_ID, true);
  view.setBigUint64(V2_NAME_OFFSET, subvolId, true);
  return buf;
}

/** A `btrfs_ioctl_ino_lookup_args` asking for the tree (subvolume) id of the fd's subvolume. */
export function encodeInoLookup(): Uint8Array {
  const buf = new Uint8Array(INO_LOOKUP_SIZE);
  _view(buf).setBigUint64(8, FIRST_FREE_OBJECTID, true);
  return buf;
}

/** The `treeid` INO_LOOKUP filled in. */
export function decodeInoLookup(buf: Uint8Array): bigint {
  return _view(buf).getBigUint64(0, true);
}

/** What BTRFS_IOC_FS_INFO reports. */
export interface BtrfsFsInfo {
  /** The filesystem UUID, as `btrfs filesystem show` prints it. */
  fsid: string;
  devices: number;
  nodeSize: number;
  sectorSize: number;
  /** "crc32c", "xxhash64", "sha256", "blake2b" (or the number). */
  checksum: string;
  generation: bigint;
}

/** A `btrfs_ioctl_fs_info_args` asking for the checksum and generation fields too. */
export function encodeFsInfo(): Uint8Array {
  const buf = new Uint8Array(FS_INFO_SIZE);
  _view(buf).setBigUint64(48, FS_INFO_FLAGS, true);
  return buf;
}

/** Format 16 bytes as a UUID. */
export function formatUuid(bytes: Uint8Array): string {
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** Decode what FS_INFO filled in (fields the kernel did not fill read as zero). */
export function decodeFsInfo(buf: Uint8Array): BtrfsFsInfo {
  const view = _view(buf);
  const csum = view.getUint16(44, true);
  return {
    devices: Number(view.getBigUint64(8, true)),
    fsid: formatUuid(buf.subarray(16, 32)),
    nodeSize: view.getUint32(32, true),
    sectorSize: view.getUint32(36, true),
    checksum: CSUM_NAMES[csum] ?? String(csum),
    generation: view.getBigUint64(56, true),
  };
}

/** The flags word for SUBVOL_SETFLAGS, from what GETFLAGS returned: the read-only bit set or cleared. */
export function withReadonly(flags: bigint, readonly: boolean): bigint {
  return readonly ? flags | SUBVOL_RDONLY : flags & ~SUBVOL_RDONLY;
}

/** One u64 in its own buffer (SUBVOL_GETFLAGS / SETFLAGS). */
export function encodeU64(value: bigint): Uint8Array {
  const buf = new Uint8Array(8);
  _view(buf).setBigUint64(0, value, true);
  return buf;
}

/** The u64 at the start of `buf`. */
export function decodeU64(buf: Uint8Array): bigint {
  return _view(buf).getBigUint64(0, true);
}

/**
 * A `btrfs_ioctl_qgroup_limit_args` limiting the referenced bytes of the fd's own subvolume
 * (qgroupid 0); `maxReferenced` null lifts the limit.
 * @example
 * encodeQgroupLimit(1n << 30n).byteLength; // 48
 */
export function encodeQgroupLimit(maxReferenced: bigint | null): Uint8Array {
  const buf = new Uint8Array(QGROUP_LIMIT_SIZE);
  const view = _view(buf);
  view.setBigUint64(8, LIMIT_MAX_RFER, true);
  view.setBigUint64(16, maxReferenced ?? U64_MAX, true);
  return buf;
}

/** A `btrfs_ioctl_qgroup_create_args` deleting (create = 0) the qgroup `qgroupId`. */
export function encodeQgroupDestroy(qgroupId: bigint): Uint8Array {
  const buf = new Uint8Array(QGROUP_CREATE_SIZE);
  _view(buf).setBigUint64(8, qgroupId, true);
  return buf;
}

/** A `btrfs_ioctl_search_args` for the quota tree items of one type and offset (at most `nrItems`). */
function _quotaSearch(type: number, offset: bigint): Uint8Array {
  const buf = new Uint8Array(SEARCH_ARGS_SIZE);
  const view = _view(buf);
  view.setBigUint64(0, QUOTA_TREE_OBJECTID, true);
  // min/max objectid stay 0: every quota tree item this needs has objectid 0.
  view.setBigUint64(24, offset, true);
  view.setBigUint64(32, offset, true);
  view.setBigUint64(48, U64_MAX, true);
  view.setUint32(56, type, true);
  view.setUint32(60, type, true);
  view.setUint32(64, 1, true);
  return buf;
}

/** TREE_SEARCH arguments for the quota status item (ENOENT from the kernel: quotas are off). */
export function encodeQuotaStatusSearch(): Uint8Array {
  return _quotaSearch(QGROUP_STATUS_KEY, 0n);
}

/** TREE_SEARCH arguments for the accounting (info) item of `qgroupId`. */
export function encodeQgroupInfoSearch(qgroupId: bigint): Uint8Array {
  return _quotaSearch(QGROUP_INFO_KEY, qgroupId);
}

/** TREE_SEARCH arguments for the limit item of `qgroupId`. */
export function encodeQgroupLimitSearch(qgroupId: bigint): Uint8Array {
  return _quotaSearch(QGROUP_LIMIT_KEY, qgroupId);
}

/** The data of the one item a TREE_SEARCH found of `type`, or null when it found none. */
export function searchItem(buf: Uint8Array, type: number): DataView | null {
  const view = _view(buf);
  if (view.getUint32(64, true) === 0) return null;
  const header = SEARCH_KEY_SIZE;
  if (view.getUint32(header + 24, true) !== type) return null;
  const len = view.getUint32(header + 28, true);
  return new DataView(buf.buffer, buf.byteOffset + header + SEARCH_HEADER_SIZE, len);
}

/** The quota state of a filesystem. */
export interface BtrfsQuotaStatus {
  /** Quotas are on (the status item says so). */
  enabled: boolean;
  /** The numbers need a rescan to be right again. */
  inconsistent: boolean;
  /** A rescan is running. */
  rescanning: boolean;
  /** Simple quotas (squota, Linux 6.7): extents are charged to the subvolume that wrote them. */
  simple: boolean;
}

/** Decode a quota status search; null when the search found no status item. */
export function decodeQuotaStatus(buf: Uint8Array): BtrfsQuotaStatus | null {
  const item = searchItem(buf, QGROUP_STATUS_KEY);
  if (item === null || item.byteLength < 24) return null;
  const flags = item.getBigUint64(16, true);
  return {
    enabled: (flags & STATUS_ON) !== 0n,
    inconsistent: (flags & STATUS_INCONSISTENT) !== 0n,
    rescanning: (flags & STATUS_RESCAN) !== 0n,
    simple: (flags & STATUS_SIMPLE) !== 0n,
  };
}

/** A qgroup's accounting and limit. */
export interface BtrfsQgroup {
  /** Bytes the subvolume refers to, shared extents included. */
  referenced: bigint;
  /** Bytes only this subvolume refers to. */
  exclusive: bigint;
  /** The referenced-bytes limit, or null for none. */
  maxReferenced: bigint | null;
}

/** Decode an info search and a limit search of one qgroup; null when it has no info item. */
export function decodeQgroup(info: Uint8Array, limit: Uint8Array): BtrfsQgroup | null {
  const i = searchItem(info, QGROUP_INFO_KEY);
  if (i === null || i.byteLength < 40) return null;
  const l = searchItem(limit, QGROUP_LIMIT_KEY);
  let maxReferenced: bigint | null = null;
  if (l !== null && l.byteLength >= 16 && (l.getBigUint64(0, true) & LIMIT_MAX_RFER) !== 0n) {
    const max = l.getBigUint64(8, true);
    maxReferenced = max === U64_MAX ? null : max;
  }
  return { referenced: i.getBigUint64(8, true), exclusive: i.getBigUint64(24, true), maxReferenced };
}
