/**
 * strata's own entries under Home, checked before they are used as one: a directory strata made
 * must still be a directory and a file a regular file. Anything else there (a symlink above all)
 * is reported and left alone: never followed, emptied or deleted through. Checks use lstat, so
 * they see the entry itself; walks below them use O_NOFOLLOW (`Sys.lreaddirTypes`).
 */
import { lstatSync } from "node:fs";
import * as fs from "node:fs/promises";
import { StrataError } from "../core/errors.ts";

/** What is at a path strata expects to own. */
export type Own = "ok" | "missing" | "foreign";

/**
 * Whether `p` is a real directory ("dir") or regular file ("file"), missing, or something else.
 * @example
 * await ownEntry("/h/tmp", "dir"); // "foreign" when tmp is a symlink
 */
export async function ownEntry(p: string, want: "dir" | "file"): Promise<Own> {
  // One lstat on a local disk takes microseconds; through the runtime's thread pool it costs
  // 15-30 times that (Bun ~28 µs, Deno ~83 µs), and Get, Mounts and Exists make several.
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (st === undefined) return "missing";
  return (want === "dir" ? st.isDirectory() : st.isFile()) ? "ok" : "foreign";
}

/** The error for something that is not what strata made at `p`. */
export async function notOwn(p: string, want: "dir" | "file"): Promise<StrataError> {
  const st = await fs.lstat(p).catch(() => null);
  const what = st === null ? "missing" : st.isSymbolicLink() ? "a symbolic link" : `not a ${want === "dir" ? "directory" : "regular file"}`;
  return new StrataError(`Refusing to use "${p}": it is ${what} where strata keeps its own ${want === "dir" ? "directory" : "file"}`);
}

/** Throw unless `p` is a real directory (`missingOk`: or absent). */
export async function assertOwnDir(p: string, missingOk = false): Promise<void> {
  const own = await ownEntry(p, "dir");
  if (own === "ok" || (own === "missing" && missingOk)) return;
  throw await notOwn(p, "dir");
}
