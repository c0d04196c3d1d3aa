/** The `S_IF*` file-type bits of `st_mode` and their tar entry types. */
import type { TarEntryType } from "./tar-types.ts";

/** `S_IF*` constants from <sys/stat.h>. */
export const S_IF = {
  MT: 0o170000,
  SOCK: 0o140000,
  LNK: 0o120000,
  REG: 0o100000,
  BLK: 0o060000,
  DIR: 0o040000,
  CHR: 0o020000,
  FIFO: 0o010000,
} as const;

const TAR_TYPES: Record<number, TarEntryType> = {
  [S_IF.REG]: "file",
  [S_IF.DIR]: "directory",
  [S_IF.LNK]: "symlink",
  [S_IF.CHR]: "char",
  [S_IF.BLK]: "block",
  [S_IF.FIFO]: "fifo",
};

/** The tar type of an `st_mode`, or null for what tar cannot carry (sockets). */
export function tarTypeOf(mode: number): TarEntryType | null {
  return TAR_TYPES[mode & S_IF.MT] ?? null;
}

/** True when `mode` is a directory's. */
export function isDirMode(mode: number): boolean {
  return (mode & S_IF.MT) === S_IF.DIR;
}

/** The `S_IF*` bits mknod(2) needs for a device or FIFO entry. */
export function mknodType(type: "char" | "block" | "fifo"): number {
  return type === "char" ? S_IF.CHR : type === "block" ? S_IF.BLK : S_IF.FIFO;
}
