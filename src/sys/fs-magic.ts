/**
 * Filesystem names from `statfs` magics, as moby's graphdriver reports them in `docker info`
 * ("Backing Filesystem"). Names follow moby's FsNames where it has one (ext2/3/4 are all "extfs");
 * the rest come from <linux/magic.h>.
 */
import type { Sys } from "./types.ts";

/** What moby prints for a magic it does not know. */
export const UNKNOWN_FS = "<unknown>";

const FS_NAMES: ReadonlyMap<number, string> = new Map([
  // moby's FsMagic table.
  [0x61756673, "aufs"],
  [0x9123683e, "btrfs"],
  [0x28cd3d45, "cramfs"],
  [0x0000f15f, "ecryptfs"],
  [0x0000ef53, "extfs"],
  [0xf2f52010, "f2fs"],
  [0x65735546, "fuse"],
  [0x47504653, "gpfs"],
  [0x000072b6, "jffs2"],
  [0x3153464a, "jfs"],
  [0x00006969, "nfs"],
  [0x6e736673, "nsfs"],
  [0x794c7630, "overlayfs"],
  [0x858458f6, "ramfs"],
  [0x52654973, "reiserfs"],
  [0x0000517b, "smb"],
  [0x73717368, "squashfs"],
  [0x01021994, "tmpfs"],
  [0x00000000, "unsupported"],
  [0xa501fcf5, "vxfs"],
  [0x58465342, "xfs"],
  [0x2fc12fc1, "zfs"],
  // <linux/magic.h> and friends, for hosts moby never named.
  [0x5346414f, "afs"],
  [0x00000187, "autofs"],
  [0xca451a4e, "bcachefs"],
  [0xcafe4a11, "bpf"],
  [0x00c36400, "ceph"],
  [0x0027e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0xff534d42, "cifs"],
  [0x62656570, "configfs"],
  [0x64626720, "debugfs"],
  [0x00001cd1, "devpts"],
  [0xde5e81e4, "efivarfs"],
  [0xe0f5e1e2, "erofs"],
  [0x2011bab0, "exfat"],
  [0x01161970, "gfs2"],
  [0x00004244, "hfs"],
  [0x0000482b, "hfsplus"],
  [0x958458f6, "hugetlbfs"],
  [0x00009660, "isofs"],
  [0x00003434, "nilfs"],
  [0x5346544e, "ntfs"],
  [0x7461636f, "ocfs2"],
  [0x00009fa0, "proc"],
  [0x6165676c, "pstore"],
  [0x73636673, "securityfs"],
  [0xfe534d42, "smb2"],
  [0x62656572, "sysfs"],
  [0x74726163, "tracefs"],
  [0x15013346, "udf"],
  [0x00004d44, "vfat"],
  [0x01021997, "v9fs"],
]);

/**
 * The name of a filesystem magic, or "<unknown>". The magic is compared as unsigned 32-bit, so a
 * negative value (btrfs's 0x9123683E read as a signed int) still matches.
 * @example
 * fsName(0xef53); // "extfs"
 */
export function fsName(magic: number): string {
  return FS_NAMES.get(magic >>> 0) ?? UNKNOWN_FS;
}

/**
 * The name of the filesystem holding `path`; throws `ErrnoError` when `path` cannot be statfs'd.
 * @example
 * backingFs(sys, "/var/lib/docker"); // "extfs"
 */
export function backingFs(sys: Sys, path: string): string {
  return fsName(sys.statfs(path).type);
}
