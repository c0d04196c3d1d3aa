/**
 * overlay: moby's overlay2 in strata. Each layer keeps only its own files (`diff/`, the overlay
 * upper dir); Get mounts it over its parents' diffs. Diffs are native (the upper dir is the diff)
 * against a layer's own parent when overlay allows it, naive otherwise. Lower chains of up to 500
 * layers mount through the new mount API; without it, overlay2's short-link scheme and its 128.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import {
  rejectUnknownOptions, rootPair, type Change, type CreateOpts, type DiffDriver, type Driver, type DriverConfig, type IdMap, type StatusPairs,
  type Usage, type MountFits, fitsOnePage,
} from "../../src/core/driver.ts";
import { diskUsage } from "../../src/archive/size.ts";
import type { MountSpec } from "../../src/mount/spec.ts";
import { BusyError, InvalidRequestError } from "../../src/core/errors.ts";
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import { removeBeneath } from "../../src/store/remove-tree.ts";
import { KeyedLock } from "../../src/core/locks.ts";
import type { Logger } from "../../src/core/log.ts";
import { type NaiveDiffBase, withNaiveDiff } from "../../src/core/naive-diff.ts";
import { ParentIndex } from "../../src/core/parent-index.ts";
import type { Sys } from "../../src/sys/types.ts";
import { indexParents } from "./children.ts";
import { type HostFeatures, detectHost } from "./host.ts";
import { LayerStore, TMP_PREFIX } from "./layers.ts";
import { LINK_DIR, Layout, MERGED_DIR, QUOTA_DIR, TMP_DIR, imageName } from "./layout.ts";
import { type MountMethod, layerMount, maxLowers } from "./mount-spec.ts";
import { Mounts } from "../../src/mount/refcount.ts";
import { NativeDiff } from "./native-diff.ts";
import type { MountInfo } from "../../src/mount/mountinfo.ts";
import { QuotaImages, checkSize, findMkfs, parseSize } from "./quota.ts";
import type { StoreLayout } from "../../src/store/home.ts";
import { assertOwnDir } from "../../src/store/own.ts";
import type { DriverStats } from "../../src/core/driver-stats.ts";
import { sizeLimitedUse } from "./stats.ts";

/** How an overlay store made before Home markers looks: its own dot-dirs and layer directories. */
export const OVERLAY_LAYOUT: StoreLayout = { required: [LINK_DIR, TMP_DIR], optional: [QUOTA_DIR], extra: LAYER_ID_PATTERN };

/** The overlay driver's options (`strata.KEY=VALUE`). */
export const KNOWN_OPTIONS = ["mount_method", "native_diff", "size"] as const;

const METHOD_NAMES: Record<MountMethod, string> = {
  fsconfig: "new mount API, one lowerdir+ per layer",
  mount: "mount(2), short links",
};

class OverlayDriver implements Driver {
  readonly name = "overlay";
  readonly sys: Sys;
  readonly features: HostFeatures;
  #layout: Layout;
  #store: LayerStore;
  #mounts: Mounts;
  #native: NativeDiff;
  #naive: DiffDriver;
  #locks = new KeyedLock();
  #log: Logger;
  #maps: { uidMaps: IdMap[]; gidMaps: IdMap[] };
  #quota: QuotaImages;
  /** Each layer's parent, from the lower files at start, then kept in step by create and remove. */
  #parents = new ParentIndex();
  /** `strata.size`: the limit of read-write layers created without a size option; 0 for none. */
  #defaultSize: number;

  constructor(config: DriverConfig, features: HostFeatures, defaultSize: number, quota: QuotaImages) {
    this.sys = config.sys;
    this.features = features;
    this.#log = config.log;
    this.#layout = new Layout(config.home);
    const root = rootPair(config.uidMaps, config.gidMaps);
    this.#quota = quota;
    this.#defaultSize = defaultSize;
    this.#store = new LayerStore(this.#layout, config.sys, config.log, root, quota);
    this.#mounts = new Mounts(config.sys, config.log, root);
    this.#maps = { uidMaps: config.uidMaps, gidMaps: config.gidMaps };
    this.#native = new NativeDiff(this.#store, config.sys, config.log, this.#maps);
    this.#naive = this.#naiveDiff();
  }

  /**
   * Take over what a previous process left: layer mounts stay (containers may be running on them;
   * the daemon will Put them), other mounts under Home go, then the layer store is reconciled.
   */
  async recover(): Promise<void> {
    const realHome = await fs.realpath(this.#layout.home);
    const { adopted, unmounted, kept } = await this.#mounts.adopt(this.#layout.home, (mountPoint) => {
      const [id, leaf, ...rest] = path.relative(realHome, mountPoint).split(path.sep);
      return rest.length === 0 && leaf === MERGED_DIR && LAYER_ID_PATTERN.test(id) ? id : null;
    }, (m) => this.#imageMountId(realHome, m) !== null);
    if (adopted.length) this.#log.info("adopted layer mounts", { count: adopted.length });
    if (unmounted.length) this.#log.info("unmounted stale mounts", { count: unmounted.length });
    await this.#store.recoverImages(new Set(kept.map((m) => this.#imageMountId(realHome, m)!)));
    await this.#store.recover();
    this.#parents = await indexParents(this.#store, this.#log);
    // A crash between a child's rename and its parent's marker left the parent unmarked: a parent
    // is sealed whatever the order the disk kept.
    for (const parent of this.#parents.parents()) {
      if (!(await this.#store.committed(parent)) && (await this.#store.exists(parent))) {
        await this.#store.markCommitted(parent);
        this.#log.info("marked a parent committed", { id: parent });
      }
    }
  }

  /** The layer whose own filesystem (a size-limited layer's image) `m` is, or null for any other mount. */
  #imageMountId(realHome: string, m: MountInfo): string | null {
    if (!m.source.startsWith("/dev/loop") || path.dirname(m.mountPoint) !== realHome) return null;
    const id = path.basename(m.mountPoint);
    return LAYER_ID_PATTERN.test(id) ? id : null;
  }

  /** The naive diff works through get/put alone: it gets a view of this driver without the diff methods. */
  #naiveDiff(): DiffDriver {
    const proto: NaiveDiffBase = {
      name: this.name,
      sys: this.sys,
      ...this.#maps,
      parentOf: async (id) => this.#parents.parentOf(id),
      status: () => this.status(),
      getMetadata: (id) => this.getMetadata(id),
      cleanup: () => this.cleanup(),
      create: (id, parent, opts) => this.create(id, parent, opts),
      createReadWrite: (id, parent, opts) => this.createReadWrite(id, parent, opts),
      remove: (id) => this.remove(id),
      get: (id, label) => this.get(id, label),
      put: (id) => this.put(id),
      exists: (id) => this.exists(id),
      capabilities: () => this.capabilities(),
      mounts: (id, readonly) => this.mounts(id, readonly),
      commit: (id) => this.commit(id),
      usage: (id) => this.usage(id),
      layerIds: () => this.layerIds(),
    };
    return withNaiveDiff(proto);
  }

  async status(): Promise<StatusPairs> {
    const f = this.features;
    return [
      ["Backing Filesystem", f.backingFs],
      ["Supports d_type", String(f.dType)],
      ["Using metacopy", String(f.metacopy)],
      ["Native Overlay Diff", String(f.nativeDiff)],
      ["userxattr", String(f.userxattr)],
      ["Mount method", `${METHOD_NAMES[f.method]} (up to ${maxLowers(f.method) + 1} layers)`],
      ["Size limits", this.#quota.unavailableReason === null
        ? `ext4 images on loop devices${this.#defaultSize ? ` (default ${this.#defaultSize} bytes)` : ""}`
        : `unavailable: ${this.#quota.unavailableReason}`],
      ["Layers", String((await this.#store.ids()).length)],
      ["Active mounts", String(this.#mounts.active)],
    ];
  }

  async getMetadata(id: string): Promise<Record<string, string>> {
    await this.#store.mustExist(id, "inspect");
    const meta: Record<string, string> = {
      WorkDir: this.#layout.work(id),
      MergedDir: this.#layout.merged(id),
      UpperDir: this.#layout.diff(id),
    };
    const lowers = await this.#store.lowerDirs(id);
    if (lowers.length > 0) meta.LowerDir = lowers.join(":");
    return meta;
  }

  /** Unmount every layer, counted or not (daemon shutdown). */
  async cleanup(): Promise<void> {
    for (const id of this.#mounts.ids()) {
      await this.#locks.run(id, () => this.#mounts.drop(id, this.#layout.merged(id)));
    }
    // Layer filesystems stay: they hold the layers themselves, and the next Init needs them.
    const realHome = await fs.realpath(this.#layout.home);
    await this.#mounts.clearStale(this.#layout.home, (m) => this.#imageMountId(realHome, m) !== null);
  }

  create(id: string, parent: string, opts: CreateOpts): Promise<void> {
    return this.#create(id, parent, opts, false);
  }

  createReadWrite(id: string, parent: string, opts: CreateOpts): Promise<void> {
    return this.#create(id, parent, opts, true);
  }

  async #create(id: string, parent: string, opts: CreateOpts, readWrite: boolean): Promise<void> {
    const storageOpt = opts.storageOpt ?? {};
    const unknown = Object.keys(storageOpt).find((k) => k !== "size");
    if (unknown !== undefined) throw new InvalidRequestError(`Cannot create layer "${id}": unknown storage option "${unknown}" (known: size)`);
    this.#layout.layer(id);
    let size = 0;
    if (storageOpt.size !== undefined) {
      // overlay2 answers the same: image layers hold what ApplyDiff wrote and are never written again.
      if (!readWrite) throw new InvalidRequestError(`Cannot create layer "${id}": the size option is only supported for read-write layers`);
      size = checkSize(id, parseSize(storageOpt.size));
    } else if (readWrite) {
      size = this.#defaultSize;
    }
    if (size > 0 && this.#quota.unavailableReason !== null) {
      throw new InvalidRequestError(`Cannot create layer "${id}" with a size limit: ${this.#quota.unavailableReason}`);
    }
    if (size > 0) imageName(id);
    await this.#locks.runAll(parent ? [id, parent] : [id], async () => {
      await this.#store.create(id, parent, maxLowers(this.features.method), size);
      this.#parents.set(id, parent);
    });
  }

  async remove(id: string): Promise<void> {
    const merged = this.#layout.merged(id);
    await this.#locks.run(id, async () => {
      // Create holds the parent's lock until its child is indexed, so no child can appear after this check.
      this.#parents.assertNoChildren(id);
      if (this.#mounts.count(id) > 0) {
        this.#log.warn("removing a mounted layer", { id, refs: this.#mounts.count(id) });
        await this.#mounts.drop(id, merged);
      }
      await this.#store.remove(id);
      this.#parents.delete(id);
    });
  }

  async get(id: string, _mountLabel: string): Promise<string> {
    return await this.#locks.run(id, async () => {
      await this.#store.mustExist(id, "get");
      await this.#store.assertSound(id);
      const lowers = await this.#store.lowers(id);
      // A base layer is its diff dir; overlay2 does not mount it either.
      if (lowers.length === 0) return this.#layout.diff(id);
      const merged = this.#layout.merged(id);
      await this.#mounts.acquire(id, merged, async () => {
        const f = this.features;
        return layerMount({
          home: this.#layout.home,
          id,
          lowers,
          readonly: await this.#store.committed(id),
          method: f.method,
          extra: [...(f.indexOff ? ["index=off"] : []), ...(f.userxattr ? ["userxattr"] : [])],
          pageSize: f.pageSize,
        });
      }, `layer "${id}"`);
      return merged;
    });
  }

  async put(id: string): Promise<void> {
    await this.#locks.run(id, async () => {
      await this.#store.mustExist(id, "put");
      if ((await this.#store.lowers(id)).length === 0) return;
      await this.#mounts.release(id, this.#layout.merged(id));
    });
  }

  exists(id: string): Promise<boolean> {
    return this.#store.exists(id);
  }

  capabilities() {
    return { ReproducesExactDiffs: false };
  }

  /**
   * A base layer is a bind of its diff; any other an overlay of its chain's diffs (absolute paths,
   * for mount(2) in another process). When `fits` says that process cannot mount them in one call,
   * strata mounts the parent's whole chain itself, read-only (through `lowerdir+`, or mount(2)'s
   * short links on kernels before 6.8), on the parent's merged dir, and hands that out as the one
   * lower; it stays mounted until the parent is removed (children go first) and a restart adopts it
   * like any layer mount.
   */
  async mounts(id: string, readonly: boolean, fits: MountFits = fitsOnePage): Promise<MountSpec[]> {
    const spec = await this.#locks.run(id, async () => {
      await this.#store.mustExist(id, "mount");
      const diff = this.#layout.diff(id);
      const lowers = await this.#store.lowerDirs(id);
      if (lowers.length === 0) return { type: "bind", source: diff, options: ["rbind", readonly ? "ro" : "rw"] };
      const flat = this.#overlaySpec(id, lowers, readonly);
      return fits(flat, this.features.pageSize) ? flat : null;
    });
    if (spec !== null) return [spec];
    const parent = this.#parents.parentOf(id);
    // The stack is the parent's own read-only mount (committed layers mount without upper).
    if (this.#mounts.count(parent) === 0) await this.get(parent, "");
    return [this.#overlaySpec(id, [this.#layout.merged(parent)], readonly)];
  }

  #overlaySpec(id: string, lowers: string[], readonly: boolean): MountSpec {
    const f = this.features;
    const options = [...(f.indexOff ? ["index=off"] : []), ...(f.userxattr ? ["userxattr"] : [])];
    if (readonly) options.push(`lowerdir=${[this.#layout.diff(id), ...lowers].join(":")}`);
    else options.push(`lowerdir=${lowers.join(":")}`, `upperdir=${this.#layout.diff(id)}`, `workdir=${this.#layout.work(id)}`);
    return { type: "overlay", source: "overlay", options };
  }

  async commit(id: string): Promise<void> {
    await this.#locks.run(id, async () => {
      await this.#store.mustExist(id, "commit");
      await this.#store.markCommitted(id);
    });
  }

  async usage(id: string): Promise<Usage> {
    await this.#store.mustExist(id, "measure");
    return await diskUsage(this.sys, this.#layout.diff(id));
  }

  layerIds(): Promise<string[]> {
    return this.#store.ids();
  }

  /** Counts for metrics (`src/core/driver-stats.ts`): layers, mounts held, size-limited layers. */
  async stats(): Promise<DriverStats> {
    return { layers: (await this.#store.ids()).length, mounts: this.#mounts.active, sizeLimited: await sizeLimitedUse(this.sys, this.#layout) };
  }

  /** Whether the diff operations on (`id`, `parent`) may read the upper dir alone. */
  async #isNative(id: string, parent: string, action = "diff"): Promise<boolean> {
    await this.#store.mustExist(id, action);
    await this.#store.assertSound(id);
    if (!this.features.nativeDiff) return false;
    return parent === "" || parent === this.#parents.parentOf(id);
  }

  async diff(id: string, parent: string): Promise<ReadableStream<Uint8Array>> {
    if (!(await this.#isNative(id, parent))) return this.#naive.diff(id, parent);
    return this.#native.diff(id);
  }

  async changes(id: string, parent: string): Promise<Change[]> {
    if (!(await this.#isNative(id, parent))) return this.#naive.changes(id, parent);
    return this.#native.changes(id);
  }

  async diffSize(id: string, parent: string): Promise<number> {
    if (!(await this.#isNative(id, parent))) return this.#naive.diffSize(id, parent);
    return this.#native.size(id);
  }

  async applyDiff(id: string, parent: string, tar: ReadableStream<Uint8Array>): Promise<number> {
    // Extracting into the upper dir is sound whatever the kernel does with copy-up (the redirect_dir
    // and metacopy problems are about reading one back) and whichever parent is named: the tar's
    // whiteouts become overlay's own. Only where overlay.* attributes cannot be written (a user
    // namespace) does it go through the mount.
    await this.#store.mustExist(id, "apply a diff to");
    if (this.features.userxattr) return this.#naive.applyDiff(id, parent, tar);
    return await this.#locks.run(id, async () => {
      await this.#store.mustExist(id, "apply a diff to");
      await this.#store.assertSound(id).catch(async (err) => {
        await tar.cancel().catch(() => {});
        throw err;
      });
      if (this.#mounts.count(id) > 0) {
        await tar.cancel().catch(() => {});
        throw new BusyError(`Cannot apply a diff to layer "${id}": it is mounted`);
      }
      return await this.#native.apply(id, tar);
    });
  }
}

/** Parse the driver's options. */
function _options(options: Record<string, string>): { method: MountMethod | "auto"; nativeDiff: boolean; size: number } {
  rejectUnknownOptions("overlay", options, KNOWN_OPTIONS);
  const method = options.mount_method ?? "auto";
  if (!["auto", "fsconfig", "mount"].includes(method)) {
    throw new InvalidRequestError(`Invalid option strata.mount_method=${method} (auto, fsconfig or mount)`);
  }
  const native = options.native_diff ?? "auto";
  if (!["auto", "true", "false"].includes(native)) {
    throw new InvalidRequestError(`Invalid option strata.native_diff=${native} (auto or false)`);
  }
  let size = 0;
  if (options.size !== undefined) {
    try {
      size = checkSize("(default)", parseSize(options.size));
    } catch (err) {
      throw new InvalidRequestError(`Invalid option strata.size=${options.size}: ${(err as Error).message}`);
    }
  }
  return { method: method as MountMethod | "auto", nativeDiff: native !== "false", size };
}

/** Build the overlay driver on `config.home`, or throw ErrNotSupported / ErrIncompatibleFS. */
export async function initOverlay(config: DriverConfig): Promise<Driver> {
  const want = _options(config.options);
  const layout = new Layout(config.home);
  await fs.mkdir(config.home, { recursive: true, mode: 0o710 });
  await assertOwnDir(config.home);
  // runc resolves a container's rootfs path as the remapped root (userns-remap): it must get
  // through Home, as overlay2's is 0710 with the remapped root's group.
  const rootGid = rootPair(config.uidMaps, config.gidMaps).gid;
  if (rootGid !== 0) await fs.chown(config.home, process.getuid?.() ?? 0, rootGid);
  await fs.mkdir(layout.linkDir, { recursive: true, mode: 0o700 });
  await fs.mkdir(layout.tmpDir, { recursive: true, mode: 0o700 });
  await fs.mkdir(layout.quotaDir, { recursive: true, mode: 0o700 });
  // mkdir -p is content with a symlink to a directory: every walk and delete below would follow it out of Home.
  for (const dir of [layout.linkDir, layout.tmpDir, layout.quotaDir]) await assertOwnDir(dir);
  const probe = await fs.mkdtemp(path.join(layout.tmpDir, TMP_PREFIX.check));
  let features: HostFeatures;
  try {
    features = await detectHost(config.sys, probe, want);
  } finally {
    await removeBeneath(config.sys, layout.tmpDir, path.basename(probe));
  }
  if (!features.nativeDiff) config.log.warn("not using native diff for overlay", { reason: features.naiveReason });
  const quota = new QuotaImages(config.sys, config.log, findMkfs());
  if (want.size > 0 && quota.unavailableReason !== null) {
    throw new InvalidRequestError(`Invalid option strata.size=${config.options.size}: ${quota.unavailableReason}`);
  }
  const driver = new OverlayDriver(config, features, want.size, quota);
  await driver.recover();
  return driver;
}
