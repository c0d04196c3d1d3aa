/**
 * What a driver's store check reports, and the small interface a driver implements to be checked:
 * one function beside the driver (`drivers/<name>/check.ts`) that looks at a Home and returns
 * findings, each with the repair that is safe to make, if there is one. Nothing here writes.
 */
import type { MountInfo } from "../mount/mountinfo.ts";
import type { Sys } from "../sys/types.ts";

/** A problem is an inconsistency; a note is worth knowing and needs nothing done. */
export type Severity = "problem" | "note";

/** One thing a check found. */
export interface Finding {
  severity: Severity;
  /** A short stable name: "temp-entry", "dangling-link", "record-without-layer", "missing-parent"… */
  kind: string;
  /** The entry it is about (absolute). */
  path: string;
  /** What is wrong, in a sentence. */
  message: string;
  /**
   * The safe fix, which `--repair` runs; it returns what it did ("removed the link"). Absent when
   * the fix is a person's to make (the entry may hold someone's data).
   */
  repair?: () => Promise<string>;
}

/** What a store check is given. */
export interface CheckContext {
  /** The store's Home (absolute, as given). */
  home: string;
  /** Home with symlinked ancestors resolved: how mountinfo names it. */
  realHome: string;
  sys: Sys;
  /** The mount table at the start of the check. */
  mounts: readonly MountInfo[];
}

/** A driver's store check. */
export type StoreCheck = (ctx: CheckContext) => Promise<Finding[]>;

/** The layers a Home holds, read from disk without the driver (the snapshotter's records are compared with them). */
export type LayerLister = (home: string) => Promise<Array<{ id: string; path: string }>>;

/** What a driver registers for `strata check`. */
export interface StoreChecker {
  check: StoreCheck;
  layerIds: LayerLister;
}

const _checks = new Map<string, StoreChecker>();

/**
 * Make `driver`'s store check available to `strata check` (each driver's mod.ts registers its own).
 * @example
 * registerStoreCheck("vfs", checkVfsStore, vfsLayerIds);
 */
export function registerStoreCheck(driver: string, check: StoreCheck, layerIds: LayerLister): void {
  _checks.set(driver, { check, layerIds });
}

/** The store checker of `driver`, or undefined when it has none. */
export function storeCheckFor(driver: string): StoreChecker | undefined {
  return _checks.get(driver);
}

/** A finding with its fields in order (drivers' checks build many). */
export function finding(severity: Severity, kind: string, path: string, message: string, repair?: () => Promise<string>): Finding {
  return repair ? { severity, kind, path, message, repair } : { severity, kind, path, message };
}
