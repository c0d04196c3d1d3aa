/**
 * containerd's snapshotter semantics over one strata Driver, free of gRPC: `server.ts` puts it on
 * a socket. Keys are containerd's (they hold "/", spaces, ":"); layers are named by the record's
 * integer id, safe as a file name. Records and layers are kept reconcilable at every step: a
 * record is reserved before its layer is made and dropped after its layer is gone (metadata.ts).
 */
import type { Driver, Usage } from "../core/driver.ts";
import { FailedPreconditionError } from "../core/errors.ts";
import { FAULT, faultPoint } from "../core/fault.ts";
import type { Logger } from "../core/log.ts";
import type { MountSpec } from "../mount/spec.ts";
import { type Filter } from "./filters.ts";
import { fitsContainerdMount } from "./mount-fit.ts";
import { type Info, Kind, Metadata } from "./metadata.ts";

/** The label that sets an active snapshot's size limit (containerd passes `containerd.io/snapshot/*` labels on). */
export const SIZE_LABEL = "containerd.io/snapshot/strata.size";

/**
 * Whether `key` is one containerd unpacks a layer into (`<ns>/<n>/extract-<unique> <chainID>`):
 * those become image layers, so the default size limit of containers does not apply to them.
 */
export function isUnpackKey(key: string): boolean {
  return /^extract-/.test(key.split("/").slice(2).join("/") || key);
}

/** Options of a new snapshot. */
export interface CreateOptions {
  labels: Record<string, string>;
}

/** The snapshotter: the ten calls, plus start-up recovery. */
export class SnapshotService {
  #driver: Driver;
  #meta: Metadata;
  #log: Logger;

  /** `--size`: the limit of active snapshots that are not unpack targets; "" for none. */
  #defaultSize: string;

  constructor(driver: Driver, meta: Metadata, log: Logger, defaultSize = "") {
    this.#driver = driver;
    this.#meta = meta;
    this.#log = log;
    this.#defaultSize = defaultSize;
  }

  /** The driver serving the snapshots (metrics read its counts). */
  get driver(): Driver {
    return this.#driver;
  }

  /** The driver's name ("overlay", "vfs"). */
  get driverName(): string {
    return this.#driver.name;
  }

  /**
   * Stop: release the mounts strata made itself (overlay's lower stacks for deep chains; detached
   * lazily where a container's overlay still uses one, which keeps working) and close the records.
   * What containerd mounted from our Mounts is containerd's and stays.
   */
  async close(): Promise<void> {
    try {
      await this.#driver.cleanup();
    } finally {
      this.#meta.close();
    }
  }

  /** Finish what a crash interrupted: layers of rows not "ready" are removed, then the rows. */
  async recover(): Promise<void> {
    for (const id of this.#meta.pending()) {
      await this.#driver.remove(String(id));
      this.#meta.finishRemove(id);
      this.#log.info("finished an interrupted snapshot change", { id });
    }
  }

  /** An active snapshot on `parent` ("" for none): its mounts. */
  prepare(key: string, parent: string, opts: CreateOptions): Promise<MountSpec[]> {
    return this.#create(key, parent, Kind.Active, opts);
  }

  /** A read-only view of `parent`: its mounts. */
  view(key: string, parent: string, opts: CreateOptions): Promise<MountSpec[]> {
    return this.#create(key, parent, Kind.View, opts);
  }

  async #create(key: string, parent: string, kind: Kind, opts: CreateOptions): Promise<MountSpec[]> {
    const { id, parentId } = this.#meta.beginCreate(key, parent, kind, opts.labels);
    const layer = String(id);
    try {
      const parentLayer = parentId === null ? "" : String(parentId);
      if (kind === Kind.View) await this.#driver.create(layer, parentLayer, {});
      else await this.#driver.createReadWrite(layer, parentLayer, { storageOpt: this.#storageOpt(key, opts.labels) });
    } catch (err) {
      this.#meta.abortCreate(id);
      throw err;
    }
    faultPoint(FAULT.snapshotCreateBeforeRecord);
    this.#meta.finishCreate(id);
    return await this.#driver.mounts(layer, kind === Kind.View, fitsContainerdMount);
  }

  /** The size an active snapshot is limited to: its label, else the default unless containerd unpacks into it. */
  #storageOpt(key: string, labels: Record<string, string>): Record<string, string> {
    const size = labels[SIZE_LABEL] ?? (isUnpackKey(key) ? "" : this.#defaultSize);
    return size === "" || size === "0" ? {} : { size };
  }

  /** The mounts of an active snapshot or a view, as Prepare/View returned them. */
  async mounts(key: string): Promise<MountSpec[]> {
    const info = this.#meta.get(key);
    if (info.kind === Kind.Committed) throw new FailedPreconditionError(`Cannot mount snapshot "${key}": it is committed (only active snapshots and views have mounts)`);
    return await this.#driver.mounts(String(info.id), info.kind === Kind.View, fitsContainerdMount);
  }

  /** Turn the active snapshot `key` into the committed snapshot `name`. */
  async commit(name: string, key: string, opts: CreateOptions): Promise<void> {
    const info = this.#meta.activeForCommit(key, name);
    const layer = String(info.id);
    // Measured before the driver seals it: a commit may change how the layer is stored (erofs
    // writes the upper dir as an image), not what it holds.
    const usage = await this.#driver.usage(layer);
    await this.#driver.commit(layer);
    faultPoint(FAULT.snapshotCommitBeforeRecord);
    this.#meta.commit(key, name, opts.labels, usage);
  }

  /** Remove a snapshot no other is built on. */
  async remove(key: string): Promise<void> {
    const id = this.#meta.beginRemove(key);
    const layer = String(id);
    faultPoint(FAULT.snapshotRemoveBeforeLayer);
    await this.#driver.remove(layer);
    faultPoint(FAULT.snapshotRemoveBeforeRecord);
    this.#meta.finishRemove(id);
  }

  /** What containerd's Stat returns. */
  stat(key: string): Info {
    return this.#meta.get(key);
  }

  /** containerd's Update: labels only. */
  update(key: string, labels: Record<string, string>, paths: readonly string[]): Info {
    return this.#meta.update(key, labels, paths);
  }

  /** Every snapshot `filter` selects. */
  list(filter: Filter): Info[] {
    return this.#meta.list().filter(filter);
  }

  /**
   * Disk use: measured now for an active snapshot, recorded at Commit for a committed one
   * (constant time), nothing for a view (it writes nothing of its own).
   */
  async usage(key: string): Promise<Usage> {
    const info = this.#meta.get(key);
    if (info.kind === Kind.Active) return await this.#driver.usage(String(info.id));
    return info.usage ?? { size: 0, inodes: 0 };
  }

  /**
   * containerd's Cleanup: remove layers no record names (what an earlier failure left). Layers are
   * listed before records are read: a record is written before its layer is made and dropped only
   * after the layer is gone, so a listed layer without a record is one no call is working on (or
   * one a Remove has just deleted; removing a missing layer does nothing).
   */
  async cleanup(): Promise<void> {
    const layers = await this.#driver.layerIds();
    const known = this.#meta.ids();
    // Newest first: a layer made on another is always numbered after it, so children go before parents.
    const orphans = layers.filter((l) => !(known.has(Number(l)) && /^\d+$/.test(l)));
    for (const layer of orphans.sort((a, b) => Number(b) - Number(a) || b.localeCompare(a))) {
      this.#log.info("cleanup: removing a layer no snapshot names", { layer });
      await this.#driver.remove(layer);
    }
  }
}
