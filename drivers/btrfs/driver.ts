/**
 * btrfs: every layer is a subvolume (`subvolumes/<id>`, moby's layout) and a child is a snapshot
 * of its parent, so a layer costs what it changes, not a copy. An image layer is frozen
 * (read-only) once a child is built on it or containerd commits it; dockerd writes it only through
 * ApplyDiff before that, and an ApplyDiff later still works (below). Size limits are qgroup limits
 * of referenced bytes (moby's choice: the whole root filesystem as the container sees it,
 * parents' data included), refused where the filesystem has quotas off: strata does not turn
 * quotas on for a host (they cost every write on the whole filesystem; `btrfs quota enable` is
 * the operator's call). Everything goes through btrfs ioctls in `src/sys`; no `btrfs` binary.
 *
 * Atomicity: a layer is made in `tmp/` (create or snapshot) and renamed into place; ApplyDiff
 * writes into a writable snapshot of the layer and swaps it in with one renameat2(EXCHANGE);
 * Remove renames the subvolume into `tmp/` and destroys it after; startup destroys what `tmp/`
 * holds. Diff and Changes come from the naive diff.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { applyLayer } from "../../src/archive/apply.ts";
import { diskUsage } from "../../src/archive/size.ts";
import {
  rejectUnknownOptions, rootPair, type CreateOpts, type Driver, type DriverConfig, type IdMap, type StatusPairs, type Usage,
} from "../../src/core/driver.ts";
import { AlreadyExistsError, ErrPrerequisites, InvalidRequestError, NotFoundError, hasCode } from "../../src/core/errors.ts";
import { FAULT, faultPoint } from "../../src/core/fault.ts";
import { assertLayerId } from "../../src/core/layer-id.ts";
import { KeyedLock } from "../../src/core/locks.ts";
import type { Logger } from "../../src/core/log.ts";
import { withNaiveDiff } from "../../src/core/naive-diff.ts";
import { MIN_SIZE, parseSize } from "../../src/core/size-units.ts";
import type { MountSpec } from "../../src/mount/spec.ts";
import type { StoreLayout } from "../../src/store/home.ts";
import { assertOwnDir, ownEntry } from "../../src/store/own.ts";
import { publish, syncParent, syncStaged } from "../../src/store/durable.ts";
import { Staging } from "../../src/store/staging.ts";
import { backingFs } from "../../src/sys/fs-magic.ts";
import { RENAME, type Sys } from "../../src/sys/types.ts";
import { LayerRecords, META_DIR } from "../../src/store/layer-records.ts";
import { LAYER_RECORD, type LayerRecord } from "./records.ts";
import { destroyTree, removeTempEntry } from "./subvolume.ts";

/** Where layers live, under Home (moby's name). */
export const SUBVOLUMES_DIR = "subvolumes";
/** Where layers are built and destroyed, under Home; emptied at start. */
export const TMP_DIR = "tmp";
/** The prefixes of the temp dir's entries: a layer built, its record staged, an ApplyDiff's snapshot, a layer removed. */
export const STAGING = { create: "new-", record: "meta-", apply: "apply-", remove: "rm-" } as const;
/** How a btrfs store looks. */
export const BTRFS_LAYOUT: StoreLayout = { required: [SUBVOLUMES_DIR, TMP_DIR, META_DIR] };
/** `strata.size`: the limit of read-write layers created without a size option. */
const KNOWN_OPTIONS = ["size"] as const;
/** What `df` and statfs call btrfs. */
const BTRFS_FS = "btrfs";

/** Why a size limit cannot be set on the filesystem holding `home`, or null when it can. */
function _quotaProblem(sys: Sys, home: string): string | null {
  const status = sys.btrfsQuotaStatus(home);
  if (status === null || !status.enabled) {
    return `quotas are not enabled on this btrfs filesystem (enable them with "btrfs quota enable <mount point>")`;
  }
  return null;
}

/** A size from a storage option, at least MIN_SIZE. */
function _size(text: string, what: string): number {
  const bytes = parseSize(text);
  if (bytes < MIN_SIZE) throw new InvalidRequestError(`Cannot ${what}: size ${bytes} is below the minimum of ${MIN_SIZE / 2 ** 20} MiB`);
  return bytes;
}

class BtrfsDriver {
  readonly name = "btrfs";
  readonly sys: Sys;
  /** Container → host UID map (userns-remap): the naive diff shifts owners through it. */
  readonly uidMaps: IdMap[];
  /** Container → host GID map. */
  readonly gidMaps: IdMap[];
  #root: { uid: number; gid: number };
  #home: string;
  #log: Logger;
  #locks = new KeyedLock();
  #staging: Staging;
  #records: LayerRecords<LayerRecord>;
  #defaultSize: number;

  constructor(config: DriverConfig, defaultSize: number) {
    this.#home = config.home;
    this.sys = config.sys;
    this.uidMaps = config.uidMaps;
    this.gidMaps = config.gidMaps;
    this.#root = rootPair(config.uidMaps, config.gidMaps);
    this.#log = config.log;
    this.#defaultSize = defaultSize;
    this.#records = new LayerRecords(config.home, config.sys, config.log, LAYER_RECORD);
    this.#staging = new Staging(path.join(config.home, TMP_DIR), config.sys, config.log);
  }

  /** Undo what a crash interrupted: everything in tmp/ is a build not renamed in or a removal not finished. */
  async recover(): Promise<void> {
    const tmp = path.join(this.#home, TMP_DIR);
    for (const name of await fs.readdir(tmp)) await removeTempEntry(this.sys, path.join(tmp, name));
    await this.#records.load((id) => this.exists(id));
  }

  #dir(id: string): string {
    assertLayerId(id);
    return path.join(this.#home, SUBVOLUMES_DIR, id);
  }

  /** The parent Diff and Changes compare with when asked for "" (the layer's own parent). */
  async parentOf(id: string): Promise<string> {
    return this.#records.index.parentOf(id);
  }

  async status(): Promise<StatusPairs> {
    const info = this.sys.btrfsFsInfo(this.#home);
    const quota = this.sys.btrfsQuotaStatus(this.#home);
    const quotaText = quota === null || !quota.enabled
      ? "disabled"
      : `enabled${quota.simple ? " (simple)" : ""}${quota.inconsistent ? " (inconsistent: needs a rescan)" : ""}${quota.rescanning ? " (rescanning)" : ""}`;
    const layers = await fs.readdir(path.join(this.#home, SUBVOLUMES_DIR));
    return [
      ["Backing Filesystem", BTRFS_FS],
      ["Btrfs Filesystem UUID", info.fsid],
      ["Btrfs Devices", String(info.devices)],
      ["Btrfs Node Size", String(info.nodeSize)],
      ["Btrfs Sector Size", String(info.sectorSize)],
      ["Btrfs Checksum", info.checksum],
      ["Btrfs Quotas", quotaText],
      ["Default Size Limit", this.#defaultSize > 0 ? String(this.#defaultSize) : "none"],
      ["Layers", String(layers.length)],
    ];
  }

  async getMetadata(id: string): Promise<Record<string, string>> {
    await this.#mustExist(id, "inspect");
    return { Dir: this.#dir(id) };
  }

  async cleanup(): Promise<void> {}

  create(id: string, parent: string, opts: CreateOpts): Promise<void> {
    return this.#create(id, parent, opts, false);
  }

  createReadWrite(id: string, parent: string, opts: CreateOpts): Promise<void> {
    return this.#create(id, parent, opts, true);
  }

  #sizeOf(id: string, opts: CreateOpts, readWrite: boolean): number {
    const storageOpt = opts.storageOpt ?? {};
    const unknown = Object.keys(storageOpt).find((k) => k !== "size");
    if (unknown !== undefined) throw new InvalidRequestError(`Cannot create layer "${id}": unknown storage option "${unknown}" (known: size)`);
    let size = readWrite ? this.#defaultSize : 0;
    if (storageOpt.size !== undefined) {
      if (!readWrite) throw new InvalidRequestError(`Cannot create layer "${id}": the size option is only supported for read-write layers`);
      size = _size(storageOpt.size, `create layer "${id}"`);
    }
    if (size > 0) {
      const problem = _quotaProblem(this.sys, this.#home);
      if (problem !== null) throw new InvalidRequestError(`Cannot create layer "${id}" with a size limit: ${problem}`);
    }
    return size;
  }

  async #create(id: string, parent: string, opts: CreateOpts, readWrite: boolean): Promise<void> {
    const dir = this.#dir(id);
    const size = this.#sizeOf(id, opts, readWrite);
    await this.#locks.runAll(parent ? [id, parent] : [id], async () => {
      if (await this.exists(id)) throw new AlreadyExistsError(`Cannot create layer "${id}": it already exists`);
      if (parent) await this.#mustExist(parent, `create layer "${id}" on`);
      const staging = this.#staging.path(STAGING.create, id);
      const record: LayerRecord = { parent, readWrite, size };
      try {
        if (parent) {
          // Built on from now: an image layer stays as its children saw it.
          if (!this.#records.get(parent)?.readWrite) this.sys.btrfsSetReadonly(this.#dir(parent), true);
          this.sys.btrfsSnapshot(this.#dir(parent), path.dirname(staging), path.basename(staging), false);
        } else {
          this.sys.btrfsSubvolCreate(path.dirname(staging), path.basename(staging));
          await fs.chmod(staging, 0o755);
          await fs.chown(staging, this.#root.uid, this.#root.gid);
        }
        if (size > 0) this.sys.btrfsQgroupLimit(staging, BigInt(size));
        await this.#records.write(id, record, this.#staging.path(STAGING.record, id));
        faultPoint(FAULT.createBeforeRename);
        // One syncfs commits btrfs's transaction: the snapshot and whatever was written in it.
        await publish(this.sys, staging, dir, "filesystem");
      } catch (err) {
        await destroyTree(this.sys, staging).catch((e) => this.#log.warn("create left a subvolume", { id, err: String(e) }));
        await this.#records.delete(id);
        throw err;
      }
      this.#records.set(id, record);
    });
  }

  async remove(id: string): Promise<void> {
    const dir = this.#dir(id);
    await this.#locks.run(id, async () => {
      // Create holds the parent's lock until its child is recorded, so no child can appear after this check.
      this.#records.index.assertNoChildren(id);
      if ((await ownEntry(dir, "dir")) === "foreign") {
        this.#log.warn("a layer's place holds something that is not a directory: left alone", { id, path: dir });
        return;
      }
      // A read-only subvolume cannot be moved (its ".." would change): thaw it first. A crash
      // right after leaves a layer nobody builds on writable, which changes nothing anyone sees.
      if ((await ownEntry(dir, "dir")) === "ok" && this.sys.btrfsIsReadonly(dir)) this.sys.btrfsSetReadonly(dir, false);
      const doomed = await this.#staging.moveAside(dir, STAGING.remove, id);
      if (doomed === null) return;
      faultPoint(FAULT.removeBeforeDelete);
      await this.#records.delete(id);
      // The layer is gone once renamed; what cannot be destroyed now goes at the next start.
      await this.#discard(doomed, id, "remove");
    });
  }

  /** Destroy a subvolume moved aside, and its qgroup (the kernel keeps a deleted subvolume's qgroup). */
  async #discard(p: string, id: string, what: string): Promise<void> {
    let subvolId: bigint | null = null;
    try {
      subvolId = this.sys.btrfsSubvolId(p);
      await destroyTree(this.sys, p);
    } catch (err) {
      this.#log.warn(`${what} left a subvolume`, { id, err: String(err) });
      return;
    }
    if (subvolId === null || this.sys.btrfsQuotaStatus(this.#home)?.enabled !== true) return;
    try {
      this.sys.btrfsQgroupDestroy(this.#home, subvolId);
    } catch (err) {
      // Newer kernels drop it themselves once the subvolume is cleaned; busy until then on others.
      if (!hasCode(err, "ENOENT", "EBUSY")) this.#log.debug("a removed layer's qgroup stays", { id, err: String(err) });
    }
  }

  async get(id: string, _mountLabel: string): Promise<string> {
    await this.#mustExist(id, "get");
    return this.#dir(id);
  }

  async put(id: string): Promise<void> {
    await this.#mustExist(id, "put");
  }

  async exists(id: string): Promise<boolean> {
    return (await ownEntry(this.#dir(id), "dir")) === "ok";
  }

  capabilities() {
    return { ReproducesExactDiffs: false };
  }

  /** A layer is one subvolume: a bind of it. */
  async mounts(id: string, readonly: boolean): Promise<MountSpec[]> {
    await this.#mustExist(id, "mount");
    return [{ type: "bind", source: this.#dir(id), options: ["rbind", readonly ? "ro" : "rw"] }];
  }

  /** containerd's Commit: the layer is frozen read-only, as its btrfs snapshotter's committed snapshots are. */
  async commit(id: string): Promise<void> {
    await this.#locks.run(id, async () => {
      await this.#mustExist(id, "commit");
      this.sys.btrfsSetReadonly(this.#dir(id), true);
    });
  }

  async usage(id: string): Promise<Usage> {
    await this.#mustExist(id, "measure");
    return await diskUsage(this.sys, this.#dir(id));
  }

  async layerIds(): Promise<string[]> {
    return await fs.readdir(path.join(this.#home, SUBVOLUMES_DIR));
  }

  /**
   * Extract into a writable snapshot of the layer and exchange it with the layer in one
   * renameat2(EXCHANGE): a failed or interrupted apply leaves the layer as it was, and a frozen
   * layer gets its read-only flag back.
   */
  async applyDiff(id: string, _parent: string, tar: ReadableStream<Uint8Array>): Promise<number> {
    return await this.#locks.run(id, async () => {
      await this.#mustExist(id, "apply a diff to");
      const dir = this.#dir(id);
      const staging = this.#staging.path(STAGING.apply, id);
      let size: number;
      try {
        const frozen = this.sys.btrfsIsReadonly(dir);
        this.sys.btrfsSnapshot(dir, path.dirname(staging), path.basename(staging), false);
        const limit = this.#records.get(id)?.size ?? 0;
        if (limit > 0) this.sys.btrfsQgroupLimit(staging, BigInt(limit));
        size = await applyLayer(staging, tar, { sys: this.sys, whiteouts: "delete", uidMaps: this.uidMaps, gidMaps: this.gidMaps });
        await syncStaged(this.sys, staging, "filesystem");
        faultPoint(FAULT.applyBeforeSwap);
        // Read-only subvolumes cannot be renamed: thaw, swap, freeze the new content. Children are
        // snapshots, so a crash in between changes nothing they see; the layer is merely writable.
        if (frozen) this.sys.btrfsSetReadonly(dir, false);
        try {
          this.sys.rename2(staging, dir, RENAME.EXCHANGE);
        } catch (err) {
          if (frozen) this.sys.btrfsSetReadonly(dir, true);
          throw err;
        }
        if (frozen) this.sys.btrfsSetReadonly(dir, true);
        await syncParent(this.sys, dir);
      } catch (err) {
        await tar.cancel().catch(() => {});
        await destroyTree(this.sys, staging).catch((e) => this.#log.warn("apply left a subvolume", { id, err: String(e) }));
        throw err;
      }
      // `staging` now holds the layer as it was before.
      await this.#discard(staging, id, "apply");
      return size;
    });
  }

  async #mustExist(id: string, action: string): Promise<void> {
    if (!(await this.exists(id))) throw new NotFoundError(`Cannot ${action} layer "${id}": it does not exist`);
  }
}

/** The nearest existing directory at or above `p`: what statfs can tell the filesystem of. */
async function _existing(p: string): Promise<string> {
  for (let dir = p; ; dir = path.dirname(dir)) {
    if (await fs.lstat(dir).then(() => true, () => false)) return dir;
    if (dir === "/") return dir;
  }
}

/** Build the btrfs driver on `config.home`; ErrPrerequisites when Home is not on btrfs. */
export async function initBtrfs(config: DriverConfig): Promise<Driver> {
  rejectUnknownOptions("btrfs", config.options, KNOWN_OPTIONS);
  const fsName = backingFs(config.sys, await _existing(config.home));
  if (fsName !== BTRFS_FS) throw new ErrPrerequisites(`Cannot use the btrfs driver: "${config.home}" is on ${fsName}, not btrfs`);
  let defaultSize = 0;
  if (config.options.size !== undefined) {
    try {
      defaultSize = config.options.size === "0" ? 0 : _size(config.options.size, "set the default size limit");
    } catch (err) {
      throw new InvalidRequestError(`Invalid option strata.size=${config.options.size}: ${(err as Error).message}`);
    }
  }
  for (const dir of ["", SUBVOLUMES_DIR, TMP_DIR, META_DIR]) {
    await fs.mkdir(path.join(config.home, dir), { recursive: true, mode: 0o700 });
    // mkdir -p is content with a symlink to a directory: everything below would follow it out of Home.
    await assertOwnDir(path.join(config.home, dir));
  }
  // Home itself may be a mount of another filesystem than its parent: ask again where it is.
  const homeFs = backingFs(config.sys, config.home);
  if (homeFs !== BTRFS_FS) throw new ErrPrerequisites(`Cannot use the btrfs driver: "${config.home}" is on ${homeFs}, not btrfs`);
  if (defaultSize > 0) {
    const problem = _quotaProblem(config.sys, config.home);
    if (problem !== null) throw new InvalidRequestError(`Invalid option strata.size=${config.options.size}: ${problem}`);
  }
  const { gid } = rootPair(config.uidMaps, config.gidMaps);
  for (const dir of [config.home, path.join(config.home, SUBVOLUMES_DIR)]) {
    // runc resolves a container's rootfs path as the remapped root: it must get through Home and
    // subvolumes/ (moby makes them 0710, group the remapped root's) but nothing else may.
    await fs.chmod(dir, 0o710);
    if (gid !== 0) await fs.chown(dir, process.getuid?.() ?? 0, gid);
  }
  const driver = new BtrfsDriver(config, defaultSize);
  await driver.recover();
  return withNaiveDiff(driver);
}
