/**
 * The shape of one tar entry as strata reads and writes it: the ustar header with PAX and GNU
 * extensions already folded in (long names and links, xattrs, nanosecond times, big ids/sizes).
 */
import type { Timespec } from "../sys/types.ts";

/** Entry types strata understands (tar typeflags '0'/'\0', '1', '2', '3', '4', '5', '6'). */
export type TarEntryType = "file" | "link" | "symlink" | "char" | "block" | "directory" | "fifo";

/** One archive member's metadata. */
export interface TarHeader {
  /** Path inside the archive, PAX `path` / GNU long name resolved; directories may end with "/". */
  name: string;
  type: TarEntryType;
  /** Permission bits including setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Content bytes that follow (0 for everything but "file"). */
  size: number;
  mtime: Timespec;
  /** Hardlink target (archive path) or symlink target, PAX `linkpath` / GNU long link resolved. */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from PAX `SCHILY.xattr.NAME` records; values are raw bytes. */
  xattrs: Map<string, Uint8Array>;
  uname?: string;
  gname?: string;
}

/** One entry produced by the reader. `body` must be consumed (or `skip`ped) before asking for the next entry. */
export interface TarEntry {
  header: TarHeader;
  /** The content, chunk by chunk; empty for non-files. */
  body: AsyncIterable<Uint8Array>;
  /** Discard the rest of the body. */
  skip(): Promise<void>;
}
