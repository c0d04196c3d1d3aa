/**
 * Crash injection for the restart tests: `STRATA_FAULT=<point>` makes the process SIGKILL itself
 * when it reaches that point, so a test can check what the next start finds on disk. A SIGKILL,
 * not an exception: nothing unwinds, no `finally` runs, no temp dir is cleaned up, exactly as when
 * the OOM killer or a power cut stops the plugin. Unset, a point costs one string comparison.
 */
import process from "node:process";

/** The points the drivers pass through, by the moment they mark. */
export const FAULT = {
  /** Init: the driver started on the new Home, the Init not yet saved in the state dir. */
  initBeforeSave: "init-before-save",
  /** Create/CreateReadWrite: the new layer is complete in its temp dir, not yet renamed into place. */
  createBeforeRename: "create-before-rename",
  /** overlay Create/CreateReadWrite: the layer is in place, its parent not yet marked committed (sealed). */
  createBeforeMarkParent: "create-before-mark-parent",
  /** overlay Create of a size-limited layer: its filesystem is built and still mounted on its temp dir. */
  createStagingMounted: "create-staging-mounted",
  /** vfs ApplyDiff: the new tree is complete and published beside the layer, the layer still the old one. */
  applyReady: "apply-ready",
  /** Start-up recovery (vfs, overlay, erofs): a few entries of a leftover in the temp dir deleted, the rest not. */
  recoverMidRemove: "recover-mid-remove",
  /** ApplyDiff: the first entries of the tar are written, the rest are not. */
  applyMidExtract: "apply-mid-extract",
  /** ApplyDiff: the extraction finished; the swap that makes it the layer's content has not. */
  applyBeforeSwap: "apply-before-swap",
  /** Create of a size-limited layer: its image is in place and its directory made, not yet mounted. */
  createBeforeMount: "create-before-mount",
  /** Remove of a size-limited layer: its filesystem is unmounted, its image still in place. */
  removeAfterUnmount: "remove-after-unmount",
  /** Remove: the layer was renamed into the temp dir, nothing of it deleted yet. */
  removeBeforeDelete: "remove-before-delete",
  /** Snapshotter Prepare/View: the layer exists, its record still says "creating". */
  snapshotCreateBeforeRecord: "snapshot-create-before-record",
  /** Snapshotter Commit: the layer is sealed and measured, its record still active. */
  snapshotCommitBeforeRecord: "snapshot-commit-before-record",
  /** Snapshotter Remove: the record says "removing", the layer is still there. */
  snapshotRemoveBeforeLayer: "snapshot-remove-before-layer",
  /** Snapshotter Remove: the layer is gone, its "removing" record is not. */
  snapshotRemoveBeforeRecord: "snapshot-remove-before-record",
} as const;

/** One of the fault point names. */
export type FaultName = (typeof FAULT)[keyof typeof FAULT];

/** The environment variable naming the point to crash at. */
export const FAULT_ENV = "STRATA_FAULT";

/** How many tar entries `apply-mid-extract` lets through before it fires. */
export const FAULT_MID_EXTRACT_ENTRIES = 3;

/** Read once at load; under Deno without --allow-env reading it throws, which means no fault. */
const _armed: string = (() => {
  try {
    return process.env[FAULT_ENV] ?? "";
  } catch {
    return "";
  }
})();

/**
 * Kill the process with SIGKILL when `STRATA_FAULT` names this point.
 * @example
 * faultPoint(FAULT.createBeforeRename);
 * await fs.rename(staging, dir);
 */
export function faultPoint(name: FaultName): void {
  if (_armed === name) process.kill(process.pid, "SIGKILL");
}
