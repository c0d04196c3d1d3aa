/**
 * vfs: every layer is a full copy of its parent (reflinked where the filesystem can). Works on any
 * backing filesystem; no mounts. Layers are built in a temp dir and renamed into place; removal
 * renames first and deletes after, so a crash never leaves a half layer under its real name.
 * Each layer's parent is recorded apart from it (`parents.ts`, `src/store/layer-records.ts`): Remove refuses a layer that others
 * are built on.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { applyLayer } from "../../src/archive/apply.ts";
import { copyTree } from "../../src/archive/copy-tree.ts";
import {
  rejectUnknownOptions, rootPair, type CreateOpts, type Driver, type DriverConfig, type IdMap, type StatusPairs, type Usage,
} from "../../src/core/driver.ts";
import { diskUsage } from "../../src/archive/size.ts";
import type { MountSpec } from "../../src/mount/spec.ts";
import { AlreadyExistsError, InvalidRequestError, NotFoundError } from "../../src/core/errors.ts";
import { FAULT, faultPoint } from "../../src/core/fault.ts";
import { LAYER_ID_PATTERN, assertLayerId } from "../../src/core/layer-id.ts";
import { KeyedLock } from "../../src/core/locks.ts";
import type { Logger } from "../../src/core/log.ts";
import { withNaiveDiff } from "../../src/core/naive-diff.ts";
import type { StoreLayout } from "../../src/store/home.ts";
import { entryPath } from "../../src/store/names.ts";
import { assertOwnDir, ownEntry } from "../../src/store/own.ts";
import { publish, syncParent } from "../../src/store/durable.ts";
import { Staging } from "../../src/store/staging.ts";
import { backingFs } from "../../src/sys/fs-magic.ts";
import type { Sys } from "../../src/sys/types.ts";
import { LayerRecords, META_DIR } from "../../src/store/layer-records.ts";
import { PARENT_RECORD, type ParentRecord } from "./parents.ts";

/** Where finished layers live, under Home. */
export const LAYERS_DIR = "dir";
/** Where layers are built and deleted, under Home; emptied at start. */
export const TMP_DIR = "tmp";
/** A finished ApplyDiff waiting to be swapped in, as the previous version named it: `tmp/ready-<id>`. */
export const READY_PREFIX = "ready-";
/** A finished ApplyDiff waiting to be swapped in: `tmp/done-<…>/<id>` (the ID may fill a whole name). */
export const DONE_PREFIX = "done-";

/** How a vfs store made before Home markers looks (`meta/` came later than the other two). */
export const VFS_LAYOUT: StoreLayout = { required: [LAYERS_DIR, TMP_DIR], optional: [META_DIR] };

/** The vfs driver's options (none yet). */
const KNOWN_OPTIONS: readonly string[] = [];

class VfsDriver {
  readonly name = "vfs";
  readonly sys: Sys;
  /** Container → host UID map (userns-remap): the naive diff shifts owners through it. */
  readonly uidMaps: IdMap[];
  /** Container → host GID map. */
  readonly gidMaps: IdMap[];
  /** The remapped root, owner of every base layer's root. */
  #root: { uid: number; gid: number };
  #home: string;
  #log: Logger;
  #locks = new KeyedLock();
  #fsName: string;
  #staging: Staging;
  #records: LayerRecords<ParentRecord>;

  constructor(config: DriverConfig, fsName: string) {
    this.#home = config.home;
    this.sys = config.sys;
    this.uidMaps = config.uidMaps;
    this.gidMaps = config.gidMaps;
    this.#root = rootPair(config.uidMaps, config.gidMaps);
    this.#log = config.log;
    this.#fsName = fsName;
    this.#records = new LayerRecords(config.home, config.sys, config.log, PARENT_RECORD);
    this.#staging = new Staging(path.join(config.home, TMP_DIR), config.sys, config.log);
  }

  /**
   * Finish or undo what a crash interrupted: swap in finished applies, delete the rest of tmp/,
   * then drop the parent records of layers that did not survive.
   */
  async recover(): Promise<void> {
    const tmp = path.join(this.#home, TMP_DIR);
    for (const name of await fs.readdir(tmp)) {
      const entry = path.join(tmp, name);
      if (name.startsWith(DONE_PREFIX) && (await ownEntry(entry, "dir")) === "ok") {
        for (const id of await fs.readdir(entry)) await this.#finishApply(path.join(entry, id), id);
      } else if (name.startsWith(READY_PREFIX)) {
        await this.#finishApply(entry, name.slice(READY_PREFIX.length));
      }
      // A symlink goes as a link; what cannot go (a mount inside) is reported and left for a later start.
      await this.#staging.discard(entry, name, "recovery", FAULT.recoverMidRemove);
    }
    await this.#records.load((id) => this.exists(id));
  }

  /** Recovery of an ApplyDiff cut short between moving the old tree out and the new one in: it had finished. */
  async #finishApply(ready: string, id: string): Promise<void> {
    if (!LAYER_ID_PATTERN.test(id) || (await ownEntry(ready, "dir")) !== "ok") return;
    if ((await ownEntry(this.#dir(id), "dir")) !== "missing") return;
    await fs.rename(ready, this.#dir(id));
    await syncParent(this.sys, this.#dir(id));
    this.#log.info("recovered applied layer", { id });
  }

  #dir(id: string): string {
    assertLayerId(id);
    return path.join(this.#home, LAYERS_DIR, id);
  }

  #tmp(kind: string, id: string): string {
    return this.#staging.path(`${kind}-`, id);
  }

  /** The parent Diff and Changes compare with when asked for "" (the layer's own parent). */
  async parentOf(id: string): Promise<string> {
    return this.#records.index.parentOf(id);
  }

  async status(): Promise<StatusPairs> {
    const layers = await fs.readdir(path.join(this.#home, LAYERS_DIR));
    return [["Backing Filesystem", this.#fsName], ["Layers", String(layers.length)]];
  }

  async getMetadata(id: string): Promise<Record<string, string>> {
    await this.#mustExist(id, "inspect");
    return { Dir: this.#dir(id) };
  }

  async cleanup(): Promise<void> {}

  create(id: string, parent: string, opts: CreateOpts): Promise<void> {
    return this.#create(id, parent, opts);
  }

  createReadWrite(id: string, parent: string, opts: CreateOpts): Promise<void> {
    return this.#create(id, parent, opts);
  }

  async #create(id: string, parent: string, opts: CreateOpts): Promise<void> {
    const size = opts.storageOpt?.size;
    if (size !== undefined) throw new InvalidRequestError(`Cannot create layer "${id}": the vfs driver does not support the size option`);
    const unknown = Object.keys(opts.storageOpt ?? {}).find((k) => k !== "size");
    if (unknown !== undefined) throw new InvalidRequestError(`Cannot create layer "${id}": unknown storage option "${unknown}"`);
    const dir = this.#dir(id);
    await this.#locks.runAll(parent ? [id, parent] : [id], async () => {
      if (await this.exists(id)) throw new AlreadyExistsError(`Cannot create layer "${id}": it already exists`);
      const staging = this.#tmp("new", id);
      try {
        if (parent) {
          await this.#mustExist(parent, `create layer "${id}" on`);
          await copyTree(this.#dir(parent), staging, this.sys);
        } else {
          await fs.mkdir(staging, { mode: 0o755 });
          await fs.chown(staging, this.#root.uid, this.#root.gid);
        }
        await this.#records.write(id, { parent }, this.#tmp("meta", id));
        faultPoint(FAULT.createBeforeRename);
        // A copied parent is many files: one syncfs; an empty base layer is one directory.
        await publish(this.sys, staging, dir, parent ? "filesystem" : "entries");
      } catch (err) {
        await this.#staging.discard(staging, id, "create");
        await this.#records.delete(id);
        throw err;
      }
      this.#records.set(id, { parent });
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
      const doomed = await this.#staging.moveAside(dir, "rm-", id);
      if (doomed === null) return;
      // Durably gone under its name before dockerd hears so; the delete after may take its time.
      await syncParent(this.sys, dir);
      faultPoint(FAULT.removeBeforeDelete);
      await this.#records.delete(id);
      // The layer is gone once renamed; a failure to delete is left for the next start's recovery.
      await this.#staging.discard(doomed, id);
    });
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

  /** A layer is one directory: a bind of it. */
  async mounts(id: string, readonly: boolean): Promise<MountSpec[]> {
    await this.#mustExist(id, "mount");
    return [{ type: "bind", source: this.#dir(id), options: ["rbind", readonly ? "ro" : "rw"] }];
  }

  /** Nothing to seal: a child is a copy, so later writes could not reach it anyway. */
  async commit(id: string): Promise<void> {
    await this.#mustExist(id, "commit");
  }

  async usage(id: string): Promise<Usage> {
    await this.#mustExist(id, "measure");
    return await diskUsage(this.sys, this.#dir(id));
  }

  async layerIds(): Promise<string[]> {
    return await fs.readdir(path.join(this.#home, LAYERS_DIR));
  }

  /** Apply into a copy of the layer and swap it in, so a failed apply leaves the layer as it was. */
  async applyDiff(id: string, _parent: string, tar: ReadableStream<Uint8Array>): Promise<number> {
    return await this.#locks.run(id, async () => {
      await this.#mustExist(id, "apply a diff to");
      const staging = this.#tmp("apply", id);
      const holder = this.#tmp(DONE_PREFIX.slice(0, -1), id);
      const ready = entryPath(holder, id);
      let size: number;
      try {
        await copyTree(this.#dir(id), staging, this.sys);
        size = await applyLayer(staging, tar, { sys: this.sys, whiteouts: "delete", uidMaps: this.uidMaps, gidMaps: this.gidMaps });
        await fs.mkdir(holder, { mode: 0o700 });
        await publish(this.sys, staging, ready, "filesystem");
      } catch (err) {
        await tar.cancel().catch(() => {});
        await this.#staging.discard(staging, id, "apply");
        await this.#staging.discard(holder, id, "apply");
        throw err;
      }
      // Published but not swapped in: `recover` deletes `ready`, as the layer is still in place.
      faultPoint(FAULT.applyReady);
      const old = this.#tmp("rm", id);
      await fs.rename(this.#dir(id), old);
      // The one moment the layer is missing under its name: `recover` puts `ready` in its place.
      faultPoint(FAULT.applyBeforeSwap);
      await fs.rename(ready, this.#dir(id));
      await syncParent(this.sys, this.#dir(id));
      await fs.rmdir(holder).catch((e) => this.#log.warn("apply left a temp dir", { id, err: String(e) }));
      await this.#staging.discard(old, id, "apply");
      return size;
    });
  }

  async #mustExist(id: string, action: string): Promise<void> {
    if (!(await this.exists(id))) throw new NotFoundError(`Cannot ${action} layer "${id}": it does not exist`);
  }
}

/** Build the vfs driver on `config.home`. */
export async function initVfs(config: DriverConfig): Promise<Driver> {
  rejectUnknownOptions("vfs", config.options, KNOWN_OPTIONS);
  for (const dir of ["", LAYERS_DIR, TMP_DIR, META_DIR]) {
    await fs.mkdir(path.join(config.home, dir), { recursive: true, mode: 0o700 });
    // mkdir -p is content with a symlink to a directory: everything below would follow it out of Home.
    await assertOwnDir(path.join(config.home, dir));
  }
  const { gid } = rootPair(config.uidMaps, config.gidMaps);
  for (const dir of [config.home, path.join(config.home, LAYERS_DIR)]) {
    // runc resolves a container's rootfs path as the remapped root: it must get through Home and
    // dir/ (moby's vfs makes them 0710, group the remapped root's) but nothing else may.
    await fs.chmod(dir, 0o710);
    if (gid !== 0) await fs.chown(dir, process.getuid?.() ?? 0, gid);
  }
  const driver = new VfsDriver(config, backingFs(config.sys, config.home));
  await driver.recover();
  return withNaiveDiff(driver);
}
