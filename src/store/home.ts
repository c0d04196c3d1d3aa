/**
 * Home, checked before any driver touches the disk: an absolute, normalised path that is no
 * system directory, and either missing, empty, or a strata store of the same driver (a marker file
 * written at the first Init, or, for stores made before markers, the driver's own layout). A
 * refused Home is never written to; a fresh Home whose Init fails is put back as it was.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { InvalidRequestError, hasCode } from "../core/errors.ts";
import type { Sys } from "../sys/types.ts";
import { writeFileDurable } from "./durable.ts";

/** The marker a store gets at its first Init: `{"driver": "<name>"}`. Starts with "." as no layer ID can. */
export const MARKER_FILE = ".strata-store";
/** The longest Home accepted, in bytes: what is left of PATH_MAX holds a layer's own paths. */
export const HOME_MAX = 1024;
/** What an ext4 root holds from mkfs on: a Home holding only this is empty. */
const LOST_FOUND = "lost+found";

/** Directories Home may be below but never be: the root and the top of the system's own trees. */
const SYSTEM_DIRS = new Set([
  "/", "/bin", "/boot", "/etc", "/home", "/media", "/mnt", "/opt", "/root", "/run", "/sbin", "/srv", "/tmp",
  "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/usr/share", "/var", "/var/lib", "/var/log",
  "/var/run", "/var/tmp",
]);
/** Kernel filesystems: nothing at or below these can be Home. */
const KERNEL_TREES = ["/proc", "/sys", "/dev"];

/** How a store of one driver looks on disk, for stores made before the marker existed. */
export interface StoreLayout {
  /** Directories every such store has. */
  required: readonly string[];
  /** Directories of the driver's own it may have. */
  optional?: readonly string[];
  /** Other entries it may hold (overlay's layer directories). */
  extra?: RegExp;
}

/** What Home held before Init. */
export interface HomeState {
  home: string;
  /** Home was there (as a directory). */
  exists: boolean;
  /** Its entries, without the marker and lost+found. */
  entries: string[];
  /** The driver the marker names, or null without a marker. */
  marker: string | null;
  /** The nearest ancestor that exists: what `restoreFresh` must not go above. */
  existing: string;
}

function _refuse(home: string, why: string, as = "Home"): InvalidRequestError {
  const shown = home.length > 200 ? `${home.slice(0, 200)}…` : home;
  return new InvalidRequestError(`Cannot use ${JSON.stringify(shown)} as ${as}: ${why}`);
}

/** Why `p` (absolute, normalised) is a place no store may be, or null. */
function _systemProblem(p: string): string | null {
  if (SYSTEM_DIRS.has(p) || /^\/lib[^/]*$/.test(p)) return "it is a system directory";
  const tree = KERNEL_TREES.find((t) => p === t || p.startsWith(`${t}/`));
  return tree === undefined ? null : `it is inside "${tree}", a kernel filesystem`;
}

/**
 * Check Home as a string, touching nothing: absolute, no NUL, no ".." component, normalised, at
 * most HOME_MAX bytes, not a system directory. Throws InvalidRequestError naming the path and
 * what it was given as (`as`: "Home", or the snapshotter's "--root").
 * @example
 * checkHomePath("/var/lib/docker/strata"); // ok
 * checkHomePath("strata");                 // throws: Cannot use "strata" as Home: it is not absolute
 */
export function checkHomePath(home: string, as = "Home"): void {
  const refuse = (why: string) => _refuse(home, why, as);
  if (typeof home !== "string" || home === "") throw _refuse(String(home ?? ""), "it is empty", as);
  if (home.includes("\0")) throw refuse("it contains a NUL byte");
  if (!home.startsWith("/")) throw refuse("it is not absolute");
  if (home.split("/").includes("..")) throw refuse('it has a ".." component');
  if (new TextEncoder().encode(home).byteLength > HOME_MAX) throw refuse(`it is longer than ${HOME_MAX} bytes`);
  const normal = path.posix.normalize(home).replace(/(.)\/+$/, "$1");
  if (normal !== home) throw refuse(`it is not normalised (${JSON.stringify(normal)})`);
  const problem = _systemProblem(home);
  if (problem !== null) throw refuse(problem);
}

async function _lstat(p: string) {
  try {
    return await fs.lstat(p);
  } catch (err) {
    // ENOTDIR: a file stands where a directory of the path should be; the walk up finds it.
    if (hasCode(err, "ENOENT", "ENOTDIR")) return null;
    throw err;
  }
}

/**
 * Check Home and read what it holds, writing nothing: the path (`checkHomePath`), where it really
 * is (an ancestor may be a symlink; Home itself may not), that it is a directory, and its marker.
 */
export async function inspectHome(home: string): Promise<HomeState> {
  checkHomePath(home);
  let existing = home;
  let st = await _lstat(existing);
  const exists = st !== null;
  while (st === null) {
    existing = path.dirname(existing);
    st = await _lstat(existing);
  }
  if (exists && st.isSymbolicLink()) throw _refuse(home, "it is a symbolic link");
  const real = path.join(await fs.realpath(existing), path.relative(existing, home));
  const problem = real === home ? null : _systemProblem(real);
  if (problem !== null) throw _refuse(home, `it resolves to ${JSON.stringify(real)}: ${problem}`);
  if (!st.isDirectory()) throw _refuse(home, exists ? "it is not a directory" : `${JSON.stringify(existing)} is not a directory`);
  if (!exists) return { home, exists, entries: [], marker: null, existing };
  // A marker's temp (`markHome`) a crash left is no content of the store.
  const entries = (await fs.readdir(home)).filter((n) => n !== MARKER_FILE && n !== LOST_FOUND && !isMarkerTemp(n));
  return { home, exists, entries, marker: await _readMarker(home), existing };
}

/** The marker's temp name's tail. */
const MARKER_TEMP_SUFFIX = ".tmp";
/** A marker temp `markHome` writes (`.strata-store.<pid>.tmp`). */
const isMarkerTemp = (name: string) => name.startsWith(`${MARKER_FILE}.`) && name.endsWith(MARKER_TEMP_SUFFIX);

async function _readMarker(home: string): Promise<string | null> {
  const file = path.join(home, MARKER_FILE);
  const st = await _lstat(file);
  if (st === null) return null;
  if (!st.isFile()) throw _refuse(home, `its marker ${JSON.stringify(file)} is not a regular file`);
  // Empty: its first write was cut short by a power cut (earlier builds wrote it unsynced). It vouches for nothing, so the store must be recognised by its layout, and is marked again.
  if (st.size === 0) return null;
  try {
    const driver = JSON.parse(await fs.readFile(file, "utf8")).driver;
    if (typeof driver === "string" && driver !== "") return driver;
  } catch {
    // Reported below: a marker that says nothing cannot vouch for the store.
  }
  throw _refuse(home, `its marker ${JSON.stringify(file)} is unreadable`);
}

/** Whether Home holds nothing yet (a new store). */
export function isFresh(state: HomeState): boolean {
  return state.marker === null && state.entries.length === 0;
}

/** Whether Home, unmarked, has the layout of a store of a driver laid out as `layout`. */
export function looksLike(state: HomeState, layout: StoreLayout): boolean {
  const own = new Set([...layout.required, ...(layout.optional ?? [])]);
  return layout.required.every((n) => state.entries.includes(n)) &&
    state.entries.every((n) => own.has(n) || (layout.extra?.test(n) ?? false));
}

/** The refusal of a non-empty Home no registered driver owns; `owner` is what its marker names, if anything. */
export function foreignHome(state: HomeState, owner?: string): InvalidRequestError {
  return owner === undefined
    ? _refuse(state.home, "it is not empty and is not a strata store")
    : _refuse(state.home, `it is a strata store of the ${owner} driver, which this strata does not have`);
}

/**
 * Throw unless Home may be the store of `driver`: fresh, marked as its store, or laid out as one;
 * and none of the driver's own directories there is anything but a directory (a symlink there
 * would take every later walk and delete out of Home).
 */
export async function claimHome(state: HomeState, driver: string, layout: StoreLayout | undefined): Promise<void> {
  if (isFresh(state)) return;
  if (state.marker !== null && state.marker !== driver) {
    throw _refuse(state.home, `it is a strata store of the ${state.marker} driver, not ${driver}`);
  }
  if (state.marker === null && (layout === undefined || !looksLike(state, layout))) {
    throw _refuse(state.home, `it is not empty and is not a strata store of the ${driver} driver`);
  }
  for (const name of [...(layout?.required ?? []), ...(layout?.optional ?? [])]) {
    const p = path.join(state.home, name);
    const st = await _lstat(p);
    if (st !== null && !st.isDirectory()) {
      throw _refuse(state.home, `${JSON.stringify(p)} is ${st.isSymbolicLink() ? "a symbolic link" : "not a directory"}, where the store keeps its own directory`);
    }
  }
}

/**
 * Write the marker of a store of `driver` when there is none (Home made by the driver's Init), so
 * that it survives a power cut: a temp beside it, synced, renamed into place, the directory synced.
 */
export async function markHome(state: HomeState, driver: string, sys: Sys): Promise<void> {
  if (state.marker !== null) return;
  const st = await _lstat(state.home);
  // A driver that keeps nothing on disk (a test double) made no Home: nothing to mark.
  if (st === null || !st.isDirectory()) return;
  const file = path.join(state.home, MARKER_FILE);
  await writeFileDurable(sys, file, JSON.stringify({ driver }) + "\n", 0o600, `${file}.${process.pid}${MARKER_TEMP_SUFFIX}`);
}

/**
 * After a failed Init on a fresh Home: remove the empty directories it made, Home and the
 * ancestors it created included. Only rmdir: nothing with content goes, whoever made it.
 */
export async function restoreFresh(state: HomeState): Promise<void> {
  if (!isFresh(state)) return;
  const st = await _lstat(state.home);
  if (st === null || !st.isDirectory()) return;
  for (const name of await fs.readdir(state.home)) {
    const p = path.join(state.home, name);
    if ((await _lstat(p))?.isDirectory()) await fs.rmdir(p).catch(() => {});
  }
  if (state.exists) return;
  for (let dir = state.home; dir !== state.existing && dir !== "/"; dir = path.dirname(dir)) {
    if (!(await fs.rmdir(dir).then(() => true, () => false))) return;
  }
}
