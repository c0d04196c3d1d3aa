/**
 * erofs: every image layer is one EROFS image, written by ApplyDiff straight from the tar stream
 * (`src/erofs/`), with the tar itself kept beside it so Diff returns the original bytes (exact
 * diffs). Read-write layers are overlay upper and work dirs over the images. Images are mounted
 * (file-backed, or on a loop device) at the first Get of a layer above them, shared by every
 * layer on the chain, and unmounted with the last Put. Remove is a rename and an unlink; DiffSize
 * of an image layer is a number written at apply.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import {
  rejectUnknownOptions, rootPair, type Change, type CreateOpts, type DiffDriver, type Driver, type DriverConfig, type IdMap,
  fitsOnePage, type MountFits, type StatusPairs, type Usage,
} from "../../src/core/driver.ts";
import { applyLayer } from "../../src/archive/apply.ts";
import { diskUsage } from "../../src/archive/size.ts";
import { AlreadyExistsError, BusyError, ErrNotSupported, InvalidRequestError, NotFoundError, StrataError } from "../../src/core/errors.ts";
import { FAULT, FAULT_MID_EXTRACT_ENTRIES, faultPoint } from "../../src/core/fault.ts";
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import { KeyedLock } from "../../src/core/locks.ts";
import type { Logger } from "../../src/core/log.ts";
import { type NaiveDiffBase, withNaiveDiff } from "../../src/core/naive-diff.ts";
import { ParentIndex } from "../../src/core/parent-index.ts";
import { writeImageFromDir } from "../../src/erofs/from-dir.ts";
import { writeImageFromTar } from "../../src/erofs/from-tar.ts";
import { mountSpec, unmount } from "../../src/mount/mounter.ts";
import { mountsUnder, readMountInfo } from "../../src/mount/mountinfo.ts";
import type { MountSpec } from "../../src/mount/spec.ts";
import type { StoreLayout } from "../../src/store/home.ts";
import { assertOwnDir, notOwn, ownEntry } from "../../src/store/own.ts";
import { publish } from "../../src/store/durable.ts";
import { removeBeneath } from "../../src/store/remove-tree.ts";
import { Staging } from "../../src/store/staging.ts";
import { backingFs } from "../../src/sys/fs-magic.ts";
import type { Sys } from "../../src/sys/types.ts";
import { ImageMounts, probeImageMode } from "./image-mounts.ts";
import {
  DIFF_DIR, IMAGE_DIR, IMAGE_FILE, Layout, LINK_DIR, MERGED_DIR, PARENT_FILE, PENDING_FILE, RW_FILE, SIZE_FILE, STAGING, TAR_FILE, TMP_DIR, WORK_DIR,
} from "./layout.ts";
import { dropApplyLeftovers, sealAsImage } from "./seal.ts";
import { applyImage } from "./image-apply.ts";
import { nativeDiffProblem, pageSize } from "../overlay/host.ts";
import { upperSize } from "../overlay/upper-changes.ts";
import { ensureShortLink, fitsFsconfig, removeShortLinks } from "./short-links.ts";
import { flatSpec, type Part, planView, type ViewPlan } from "./views.ts";
import { applyRootAttrs, rootAttrs, streamFile } from "./_files.ts";
import type { NodeInit } from "../../src/erofs/image-tree.ts";

/** How an erofs store looks: its temp dir and layer directories. */
export const EROFS_LAYOUT: StoreLayout = { required: [TMP_DIR, LINK_DIR], optional: [], extra: LAYER_ID_PATTERN };

/** overlayfs's limit on lower layers. */
const MAX_LOWERS = 500;

/** A mounted view and the images it holds. */
interface _View {
  refs: number;
  dir: string;
  mounted: boolean;
  images: string[];
}

class ErofsDriver implements Driver {
  readonly name = "erofs";
  readonly sys: Sys;
  readonly uidMaps: IdMap[];
  readonly gidMaps: IdMap[];
  #layout: Layout;
  #staging: Staging;
  #log: Logger;
  #root: { uid: number; gid: number };
  #locks = new KeyedLock();
  #parents = new ParentIndex();
  #images: ImageMounts;
  #views = new Map<string, _View>();
  /** Images held for the snapshotter's mounts (another process mounts the overlay), until Remove. */
  #pinned = new Map<string, string[]>();
  /** Layers whose mounts stand on their parent's view (chains too deep for one mount(2)) → that parent. */
  #stacked = new Map<string, string>();
  #naive: DiffDriver;
  /** Whether a container layer's upper dir alone holds its changes (overlay's native diff: no redirect_dir, no metacopy). */
  #upperOnly: boolean;
  #fsName: string;
  #pageSize: number;

  constructor(config: DriverConfig, images: ImageMounts, fsName: string, pageSize: number, upperOnly: boolean) {
    this.#pageSize = pageSize;
    this.#upperOnly = upperOnly;
    this.sys = config.sys;
    this.uidMaps = config.uidMaps;
    this.gidMaps = config.gidMaps;
    this.#layout = new Layout(config.home);
    this.#staging = new Staging(this.#layout.tmpDir, config.sys, config.log);
    this.#log = config.log;
    this.#root = rootPair(config.uidMaps, config.gidMaps);
    this.#images = images;
    this.#fsName = fsName;
    const self = this;
    const proto: NaiveDiffBase = {
      name: this.name,
      sys: this.sys,
      uidMaps: this.uidMaps,
      gidMaps: this.gidMaps,
      parentOf: async (id) => this.#parents.parentOf(id),
      status: () => self.status(),
      getMetadata: (id) => self.getMetadata(id),
      cleanup: () => self.cleanup(),
      create: (id, parent, opts) => self.create(id, parent, opts),
      createReadWrite: (id, parent, opts) => self.createReadWrite(id, parent, opts),
      remove: (id) => self.remove(id),
      get: (id, label) => self.get(id, label),
      put: (id) => self.put(id),
      exists: (id) => self.exists(id),
      capabilities: () => self.capabilities(),
      mounts: (id, readonly) => self.mounts(id, readonly),
      commit: (id) => self.commit(id),
      usage: (id) => self.usage(id),
      layerIds: () => self.layerIds(),
    };
    this.#naive = withNaiveDiff(proto);
  }

  /**
   * Take over what a previous process left. A container's view (an overlay on `<id>/merged` of a
   * read-write layer) stays mounted with one reference, since the daemon will not Get it again,
   * and so do the images it stands on; so do the images of a read-write layer Mounts handed out
   * (pinned again); every other mount under Home goes. Then temp files go and
   * the parent index is rebuilt.
   */
  async recover(): Promise<void> {
    this.#parents.clear();
    const ids = await this.layerIds();
    for (const id of ids) {
      this.#parents.set(id, (await fs.readFile(this.#layout.of(id, PARENT_FILE), "utf8")).trim());
      // An apply or commit cut short: the image is what counts. Without one the kept tar goes;
      // with one, what the layer was before (markers, upper dir) goes.
      const image = await ownEntry(this.#layout.of(id, IMAGE_FILE), "file");
      if (image === "foreign") this.#log.warn("a layer's image is not a file of ours: left alone", { id });
      else if (image === "missing") await dropApplyLeftovers(this.#layout, id);
      else await this.#sealAsImage(id).catch((err) => this.#log.warn("cannot finish sealing a layer", { id, err: String(err) }));
    }
    const home = await fs.realpath(this.#layout.home);
    const found = mountsUnder(await readMountInfo(), home);
    const mountedImages = new Set<string>();
    const keep = new Set<string>();
    for (const m of found) {
      const [id, leaf, ...rest] = path.relative(home, m.mountPoint).split(path.sep);
      if (rest.length === 0 && leaf === IMAGE_DIR && m.fsType === "erofs" && LAYER_ID_PATTERN.test(id)) mountedImages.add(id);
    }
    for (const m of found) {
      const [id, leaf, ...rest] = path.relative(home, m.mountPoint).split(path.sep);
      if (rest.length || leaf !== MERGED_DIR || m.fsType !== "overlay" || !LAYER_ID_PATTERN.test(id) || this.#views.has(id)) continue;
      if (!(await this.exists(id)) || !(await this.#isRw(id).catch(() => false))) continue;
      const plan = await this.#plan(id).catch(() => null);
      const images = plan?.parts.flatMap((p) => (p.image === null ? [] : [p.image])) ?? [];
      if (plan === null || images.some((i) => !mountedImages.has(i))) continue;
      for (const image of images) this.#images.adopt(image);
      for (const image of images) keep.add(this.#layout.of(image, IMAGE_DIR));
      keep.add(m.mountPoint);
      this.#views.set(id, { refs: 1, dir: m.mountPoint, mounted: true, images });
    }
    // What Mounts handed another process (the snapshotter's active snapshots and views): that
    // process mounted the overlay itself, outside Home, on the images pinned here. A container
    // layer whose whole chain is still mounted keeps it pinned, as Mounts left it, until Commit or
    // Remove: unmounting it would detach it under a running container.
    for (const id of ids) {
      // A marker that is not ours (a symlink) makes it no container layer: the calls on it report that.
      if (this.#views.has(id) || this.#pinned.has(id) || !(await this.#isContainer(id).catch(() => false))) continue;
      const plan = await this.#plan(id).catch(() => null);
      const images = plan?.parts.flatMap((p) => (p.image === null ? [] : [p.image])) ?? [];
      if (images.length === 0 || images.some((i) => !mountedImages.has(i))) continue;
      for (const image of images) this.#images.adopt(image);
      for (const image of images) keep.add(this.#layout.of(image, IMAGE_DIR));
      this.#pinned.set(id, images);
    }
    const stale = found.filter((m) => !keep.has(m.mountPoint)).sort((a, b) => b.mountPoint.length - a.mountPoint.length);
    for (const m of stale) {
      unmount(this.sys, m.mountPoint);
      await fs.rmdir(m.mountPoint).catch(() => {});
    }
    if (this.#views.size) this.#log.info("adopted layer mounts", { count: this.#views.size });
    if (this.#pinned.size) this.#log.info("adopted images handed out by Mounts", { layers: this.#pinned.size });
    if (stale.length) this.#log.info("unmounted stale mounts", { count: stale.length });
    for (const name of await fs.readdir(this.#layout.tmpDir)) {
      // A symlink goes as a link; what cannot go (a mount inside) is reported and left for a later start.
      await this.#staging.discard(path.join(this.#layout.tmpDir, name), name, "recovery", FAULT.recoverMidRemove);
    }
  }

  async status(): Promise<StatusPairs> {
    return [
      ["Backing Filesystem", this.#fsName],
      ["Image mounts", this.#images.mode === "file" ? "file-backed (Linux 6.12+)" : "loop devices"],
      ["Exact diffs", "original layer tars kept beside the images"],
      ["Layers", String((await this.layerIds()).length)],
      ["Mounted images", String(this.#images.active)],
      ["Active mounts", String(this.#views.size)],
    ];
  }

  async getMetadata(id: string): Promise<Record<string, string>> {
    await this.#mustExist(id, "inspect");
    const meta: Record<string, string> = { MergedDir: this.#layout.of(id, MERGED_DIR) };
    if (await this.#isRw(id)) {
      meta.UpperDir = this.#layout.of(id, DIFF_DIR);
      meta.WorkDir = this.#layout.of(id, WORK_DIR);
    } else meta.Image = this.#layout.of(id, IMAGE_FILE);
    const lowers = (await this.#parts(this.#parents.parentOf(id))).map((p) => p.image === null ? p.dir : this.#layout.of(p.image, IMAGE_FILE));
    if (lowers.length) meta.LowerDir = lowers.join(":");
    return meta;
  }

  async cleanup(): Promise<void> {
    this.#stacked.clear();
    for (const id of [...this.#views.keys()]) await this.#locks.run(id, () => this.#dropView(id));
    for (const id of [...this.#pinned.keys()]) await this.#locks.run(id, () => this.#unpin(id));
    for (const id of this.#images.ids()) await this.#images.drop(id, this.#layout.of(id, IMAGE_DIR));
  }

  create(id: string, parent: string, opts: CreateOpts): Promise<void> {
    return this.#create(id, parent, opts, false);
  }

  createReadWrite(id: string, parent: string, opts: CreateOpts): Promise<void> {
    return this.#create(id, parent, opts, true);
  }

  async #create(id: string, parent: string, opts: CreateOpts, rw: boolean): Promise<void> {
    const unknown = Object.keys(opts.storageOpt ?? {})[0];
    if (unknown === "size") throw new InvalidRequestError(`Cannot create layer "${id}": the erofs driver does not support the size option`);
    if (unknown !== undefined) throw new InvalidRequestError(`Cannot create layer "${id}": unknown storage option "${unknown}"`);
    const dir = this.#layout.layer(id);
    await this.#locks.runAll(parent ? [id, parent] : [id], async () => {
      if (await this.exists(id)) throw new AlreadyExistsError(`Cannot create layer "${id}": it already exists`);
      if (parent) {
        await this.#mustExist(parent, `create layer "${id}" on`);
        // The new layer's lowers are its parent's chain (its own upper dir is no lower), as overlay counts them.
        const lowers = this.#chain(parent).length;
        if (lowers > MAX_LOWERS) throw new StrataError(`Cannot create layer "${id}": its chain of ${lowers + 1} layers is deeper than overlayfs mounts (${MAX_LOWERS + 1})`);
      }
      const staging = this.#staging.path(STAGING.create, id);
      try {
        await fs.mkdir(staging, { mode: 0o710 });
        await fs.chown(staging, process.getuid?.() ?? 0, this.#root.gid);
        // Every new layer starts as an upper dir: an image layer's is replaced by its image at ApplyDiff.
        const diff = path.join(staging, DIFF_DIR);
        await fs.mkdir(diff, { mode: 0o755 });
        // The upper dir's root is the view's root: it starts as the parent's looks.
        const attrs = parent ? await this.#rootOf(parent) : undefined;
        if (attrs) await applyRootAttrs(this.sys, attrs, diff);
        else await fs.chown(diff, this.#root.uid, this.#root.gid);
        await fs.mkdir(path.join(staging, WORK_DIR), { mode: 0o700 });
        await fs.chown(path.join(staging, WORK_DIR), this.#root.uid, this.#root.gid);
        await fs.writeFile(path.join(staging, rw ? RW_FILE : PENDING_FILE), "", { mode: 0o600 });
        await fs.writeFile(path.join(staging, PARENT_FILE), parent, { mode: 0o600 });
        faultPoint(FAULT.createBeforeRename);
        await publish(this.sys, staging, dir, "entries");
      } catch (err) {
        await this.#staging.discard(staging, id, "create");
        throw err;
      }
      this.#parents.set(id, parent);
    });
  }

  async remove(id: string): Promise<void> {
    const dir = this.#layout.layer(id);
    await this.#locks.run(id, async () => {
      this.#parents.assertNoChildren(id);
      if ((await ownEntry(dir, "dir")) === "foreign") {
        this.#log.warn("a layer's place holds something that is not a directory: left alone", { id, path: dir });
        return;
      }
      if (this.#views.has(id)) {
        this.#log.warn("removing a mounted layer", { id, refs: this.#views.get(id)!.refs });
        await this.#dropView(id);
      }
      await this.#unpin(id);
      await this.#unstack(id);
      if (this.#images.count(id) > 0) await this.#images.drop(id, this.#layout.of(id, IMAGE_DIR));
      await removeShortLinks(this.#layout.home, id, [IMAGE_DIR, DIFF_DIR]);
      const aside = await this.#staging.moveAside(dir, STAGING.remove, id);
      this.#parents.delete(id);
      if (aside === null) return;
      faultPoint(FAULT.removeBeforeDelete);
      await this.#staging.discard(aside, id);
    });
  }

  async get(id: string, _mountLabel: string): Promise<string> {
    return await this.#locks.run(id, async () => {
      await this.#mustExist(id, "get");
      return await this.#acquireView(id);
    });
  }

  async put(id: string): Promise<void> {
    await this.#locks.run(id, async () => {
      await this.#mustExist(id, "put");
      await this.#releaseView(id);
    });
  }

  async exists(id: string): Promise<boolean> {
    return (await ownEntry(this.#layout.layer(id), "dir")) === "ok" && (await ownEntry(this.#layout.of(id, PARENT_FILE), "file")) === "ok";
  }

  capabilities() {
    return { ReproducesExactDiffs: true };
  }

  /**
   * The view as data for another process. The images it needs are mounted here and stay mounted
   * (pinned) until the layer is removed: the caller takes no reference it could give back.
   */
  async mounts(id: string, readonly: boolean, fits: MountFits = fitsOnePage): Promise<MountSpec[]> {
    const flat = await this.#locks.run(id, async () => {
      await this.#mustExist(id, "mount");
      let plan = await this.#plan(id);
      // A view: the layer's own upper dir becomes one more read-only lower.
      if (readonly && plan.kind !== "empty" && (await this.#isRw(id))) {
        plan = planView({ rw: null, parts: [{ image: null, dir: this.#layout.of(id, DIFF_DIR) }, ...plan.parts] });
      }
      if (plan.kind === "empty") {
        const dir = this.#layout.of(id, MERGED_DIR);
        await fs.mkdir(dir, { mode: 0o755 }).catch(() => {});
        return { type: "bind", source: dir, options: ["rbind", "ro"] };
      }
      const spec = flatSpec(plan, readonly);
      if (!fits(spec, this.#pageSize)) return null;
      if (!this.#pinned.has(id)) this.#pinned.set(id, await this.#acquireImages(plan.parts));
      return spec;
    });
    if (flat !== null) return [flat];
    return [await this.#stackedSpec(id, readonly)];
  }

  /**
   * A layer whose chain is too deep for one mount(2) by the caller: the parent's view is mounted
   * here (its whole chain, through lowerdir+) and stands in as one lower, kept until the layer is
   * removed, as the overlay driver does.
   */
  async #stackedSpec(id: string, readonly: boolean): Promise<MountSpec> {
    const parent = this.#parents.parentOf(id);
    if (!this.#stacked.has(id)) {
      await this.get(parent, "");
      this.#stacked.set(id, parent);
    }
    return await this.#locks.run(id, async () => {
      const below = this.#views.get(parent)!.dir;
      if (await this.#isRw(id)) {
        const diff = this.#layout.of(id, DIFF_DIR);
        if (readonly) return { type: "overlay", source: "overlay", options: [`lowerdir=${diff}:${below}`] };
        return { type: "overlay", source: "overlay", options: [`lowerdir=${below}`, `upperdir=${diff}`, `workdir=${this.#layout.of(id, WORK_DIR)}`] };
      }
      const own: Part = { image: id, dir: this.#layout.of(id, IMAGE_DIR) };
      if (!this.#pinned.has(id)) this.#pinned.set(id, await this.#acquireImages([own]));
      return { type: "overlay", source: "overlay", options: [`lowerdir=${own.dir}:${below}`] };
    });
  }

  /**
   * Seal a read-write layer (the snapshotter's Commit): its upper dir becomes an image, written
   * from the directory tree, and the layer an image layer.
   */
  async commit(id: string): Promise<void> {
    await this.#locks.run(id, async () => {
      await this.#mustExist(id, "commit");
      if (!(await this.#isRw(id))) return;
      if (this.#views.has(id)) throw new BusyError(`Cannot commit layer "${id}": it is mounted`);
      // The snapshotter's client has unmounted what Mounts gave it by now: its images may go too.
      await this.#unpin(id);
      const staging = this.#staging.path(STAGING.commit, id);
      await fs.mkdir(staging, { mode: 0o700 });
      try {
        await writeImageFromDir(this.#layout.of(id, DIFF_DIR), path.join(staging, IMAGE_FILE), { sys: this.sys, sync: true });
        await fs.rename(path.join(staging, IMAGE_FILE), this.#layout.of(id, IMAGE_FILE));
      } finally {
        await this.#staging.discard(staging, id, "commit");
      }
      await this.#sealAsImage(id);
    });
  }

  /**
   * The image is in place, so the layer is an image layer from now on: its markers and upper dir
   * go. A crash in between leaves an image beside them; recovery finishes it.
   */
  async #sealAsImage(id: string): Promise<void> {
    await sealAsImage(this.#layout, this.#staging, id, (aside) => this.#staging.discard(aside, id, "seal"));
  }

  async usage(id: string): Promise<Usage> {
    await this.#mustExist(id, "measure");
    if (await this.#isRw(id)) return await diskUsage(this.sys, this.#layout.of(id, DIFF_DIR));
    let size = 0;
    let inodes = 0;
    for (const name of [IMAGE_FILE, TAR_FILE]) {
      const st = await fs.lstat(this.#layout.of(id, name)).catch(() => null);
      if (st === null) continue;
      size += st.blocks * 512;
      inodes++;
    }
    return { size, inodes };
  }

  async layerIds(): Promise<string[]> {
    const out: string[] = [];
    for (const e of await fs.readdir(this.#layout.home, { withFileTypes: true })) {
      if (e.isDirectory() && LAYER_ID_PATTERN.test(e.name) && (await this.exists(e.name))) out.push(e.name);
    }
    return out;
  }

  /** Diff of an image layer against its own parent: the tar it was applied from, byte for byte. */
  async diff(id: string, parent: string): Promise<ReadableStream<Uint8Array>> {
    const tar = await this.#exactTar(id, parent);
    if (tar !== null) return streamFile(tar);
    return await this.#naive.diff(id, parent);
  }

  changes(id: string, parent: string): Promise<Change[]> {
    return this.#naive.changes(id, parent);
  }

  async diffSize(id: string, parent: string): Promise<number> {
    if ((await this.#exactTar(id, parent)) !== null) {
      const text = await fs.readFile(this.#layout.of(id, SIZE_FILE), "utf8").catch(() => null);
      if (text !== null && /^\d+$/.test(text.trim())) return Number(text.trim());
    }
    // A container layer against its own parent: what its upper dir adds, as overlay's native diff
    // sums it (moby's overlay2 too), instead of comparing the two whole trees.
    await this.#mustExist(id, "size");
    if (this.#upperOnly && (parent === "" || parent === this.#parents.parentOf(id)) && (await this.#isRw(id))) {
      const diff = this.#layout.of(id, DIFF_DIR);
      await assertOwnDir(diff);
      return await upperSize(this.sys, diff);
    }
    return await this.#naive.diffSize(id, parent);
  }

  async applyDiff(id: string, parent: string, tar: ReadableStream<Uint8Array>): Promise<number> {
    const refuse = async (err: Error) => {
      // Unblock the daemon's upload: nothing will read the rest.
      await tar.cancel().catch(() => {});
      return err;
    };
    if (!(await this.exists(id))) throw await refuse(new NotFoundError(`Cannot apply a diff to layer "${id}": it does not exist`));
    const ownParent = this.#parents.parentOf(id);
    if (parent !== "" && parent !== ownParent) throw await refuse(new InvalidRequestError(`Cannot apply a diff to layer "${id}" against "${parent}": it was created on "${ownParent}"`));
    return await this.#locks.run(id, async () => {
      if (this.#views.has(id) || this.#pinned.has(id) || this.#images.count(id) > 0) {
        throw await refuse(new BusyError(`Cannot apply a diff to layer "${id}": it is mounted`));
      }
      // A container's layer, or an image layer something already wrote into (BuildKit): the tar goes into the upper dir.
      const intoUpper = (await this.#isRw(id)) && !(await this.#isPending(id) && (await this.#upperEmpty(id)));
      if (intoUpper) {
        // Never through a planted symlink: the apply would write wherever it points.
        await assertOwnDir(this.#layout.of(id, DIFF_DIR)).catch(async (err) => {
          throw await refuse(err);
        });
        return await applyLayer(this.#layout.of(id, DIFF_DIR), tar, { sys: this.sys, whiteouts: "overlay", uidMaps: this.uidMaps, gidMaps: this.gidMaps });
      }
      const root = ownParent ? await this.#locks.run(ownParent, () => this.#rootOf(ownParent)) : undefined;
      const staging = this.#staging.path(STAGING.apply, id);
      const size = await applyImage(tar, staging, this.#layout.layer(id), {
        sys: this.sys,
        uidMaps: this.uidMaps,
        gidMaps: this.gidMaps,
        root,
        onEntry: (n) => {
          if (n === FAULT_MID_EXTRACT_ENTRIES) faultPoint(FAULT.applyMidExtract);
        },
        beforeSwap: () => faultPoint(FAULT.applyBeforeSwap),
      });
      await this.#sealAsImage(id);
      return size;
    });
  }

  /** The kept tar of `id` when a Diff against `parent` is exactly it, else null. */
  async #exactTar(id: string, parent: string): Promise<string | null> {
    await this.#mustExist(id, "diff");
    if (parent !== "" && parent !== this.#parents.parentOf(id)) return null;
    if (await this.#isRw(id)) return null;
    const tar = this.#layout.of(id, TAR_FILE);
    return (await ownEntry(tar, "file")) === "ok" && (await this.#hasImage(id)) ? tar : null;
  }

  async #mustExist(id: string, action: string): Promise<void> {
    if (!(await this.exists(id))) throw new NotFoundError(`Cannot ${action} layer "${id}": it does not exist`);
  }

  /**
   * Whether the layer is an upper dir (a container's layer, or an image layer not applied yet);
   * a marker that is not our file (a planted symlink) is refused. An image in place wins.
   */
  async #isRw(id: string): Promise<boolean> {
    if (await this.#hasImage(id)) return false;
    return (await this.#ownFile(this.#layout.of(id, RW_FILE))) || (await this.#isPending(id));
  }

  /** A container layer: the rw marker and no image (an image layer waiting for its ApplyDiff is none). */
  async #isContainer(id: string): Promise<boolean> {
    return !(await this.#hasImage(id)) && (await this.#ownFile(this.#layout.of(id, RW_FILE)));
  }

  async #isPending(id: string): Promise<boolean> {
    return await this.#ownFile(this.#layout.of(id, PENDING_FILE));
  }

  async #upperEmpty(id: string): Promise<boolean> {
    const diff = this.#layout.of(id, DIFF_DIR);
    await assertOwnDir(diff);
    return this.sys.lreaddirTypes(diff).length === 0;
  }

  /** Whether the layer has its image; an image that is not our file is refused, never mounted. */
  async #hasImage(id: string): Promise<boolean> {
    return await this.#ownFile(this.#layout.of(id, IMAGE_FILE));
  }

  async #ownFile(file: string): Promise<boolean> {
    const own = await ownEntry(file, "file");
    if (own === "foreign") throw await notOwn(file, "file");
    return own === "ok";
  }

  /** `id` and its ancestors, nearest first. */
  #chain(id: string): string[] {
    const out: string[] = [];
    for (let at = id; at !== ""; at = this.#parents.parentOf(at)) {
      out.push(at);
      if (out.length > MAX_LOWERS + 1) throw new StrataError(`Layer "${id}" has a parent cycle`);
    }
    return out;
  }

  /** The lower parts of a view whose nearest layer is `top` ("" for none). */
  async #parts(top: string): Promise<Part[]> {
    if (top === "") return [];
    const parts: Part[] = [];
    for (const layer of this.#chain(top)) {
      if (await this.#isRw(layer)) {
        const diff = this.#layout.of(layer, DIFF_DIR);
        await assertOwnDir(diff);
        parts.push({ image: null, dir: diff });
      } else if (await this.#hasImage(layer)) parts.push({ image: layer, dir: this.#layout.of(layer, IMAGE_DIR) });
    }
    return parts;
  }

  async #plan(id: string): Promise<ViewPlan> {
    const rw = await this.#isRw(id);
    if (!rw) return planView({ rw: null, parts: await this.#parts(id) });
    const diff = this.#layout.of(id, DIFF_DIR);
    await assertOwnDir(diff);
    await assertOwnDir(this.#layout.of(id, WORK_DIR));
    return planView({ rw: { diff, work: this.#layout.of(id, WORK_DIR) }, parts: await this.#parts(this.#parents.parentOf(id)) });
  }

  /** The overlay spec of `plan`, in short form (links, paths relative to the layer's dir) when too long for fsconfig. */
  async #fitted(id: string, plan: ViewPlan & { kind: "overlay" }): Promise<MountSpec> {
    if (fitsFsconfig(plan.spec.options)) return plan.spec;
    await assertOwnDir(this.#layout.linkDir);
    const options: string[] = [];
    for (const p of plan.parts) {
      const owner = p.image ?? path.basename(path.dirname(p.dir));
      options.push(`lowerdir+=${await ensureShortLink(this.#layout.home, owner, path.basename(p.dir))}`);
    }
    if (await this.#isRw(id)) options.push(`upperdir=${DIFF_DIR}`, `workdir=${WORK_DIR}`);
    return { type: "overlay", source: "overlay", options, cwd: this.#layout.layer(id) };
  }

  /** Mount the images of `parts`; returns their IDs, for the release. */
  async #acquireImages(parts: Part[]): Promise<string[]> {
    const held: string[] = [];
    try {
      for (const p of parts) {
        if (p.image === null) continue;
        const image = p.image;
        await this.#locks.run(`\0image:${image}`, () => this.#images.acquire(image, this.#layout.of(image, IMAGE_FILE), p.dir));
        held.push(image);
      }
    } catch (err) {
      await this.#releaseImages(held);
      throw err;
    }
    return held;
  }

  async #releaseImages(ids: string[]): Promise<void> {
    for (const image of ids) {
      await this.#locks.run(`\0image:${image}`, () => this.#images.release(image, this.#layout.of(image, IMAGE_DIR)));
    }
  }

  /** Get without the layer's lock (the caller holds it). */
  async #acquireView(id: string): Promise<string> {
    const view = this.#views.get(id);
    if (view) {
      view.refs++;
      return view.dir;
    }
    const plan = await this.#plan(id);
    const images = await this.#acquireImages(plan.parts);
    const merged = this.#layout.of(id, MERGED_DIR);
    try {
      let dir: string;
      let mounted = false;
      if (plan.kind === "dir" || plan.kind === "single") dir = plan.dir;
      else {
        await fs.mkdir(merged, { mode: 0o755 }).catch(() => {});
        await assertOwnDir(merged);
        if (plan.kind === "overlay") {
          await fs.chown(merged, this.#root.uid, this.#root.gid);
          mountSpec(this.sys, await this.#fitted(id, plan), merged, `layer "${id}"`);
          mounted = true;
        } else {
          await fs.chown(merged, this.#root.uid, this.#root.gid);
          await fs.chmod(merged, 0o755);
        }
        dir = merged;
      }
      this.#views.set(id, { refs: 1, dir, mounted, images });
      return dir;
    } catch (err) {
      await this.#releaseImages(images);
      throw err;
    }
  }

  async #releaseView(id: string): Promise<void> {
    const view = this.#views.get(id);
    if (!view) return;
    if (--view.refs > 0) return;
    await this.#dropView(id);
  }

  async #dropView(id: string): Promise<void> {
    const view = this.#views.get(id);
    if (!view) return;
    this.#views.delete(id);
    if (view.mounted) {
      if (unmount(this.sys, view.dir) === "detached") this.#log.warn("layer was busy: detached its mount", { id });
    }
    if (view.dir === this.#layout.of(id, MERGED_DIR)) await fs.rmdir(view.dir).catch(() => {});
    await this.#releaseImages(view.images);
  }

  /** Let go of the parent's view a deep layer's mounts stood on. */
  async #unstack(id: string): Promise<void> {
    const parent = this.#stacked.get(id);
    if (parent === undefined) return;
    this.#stacked.delete(id);
    await this.#locks.run(parent, () => this.#releaseView(parent));
  }

  async #unpin(id: string): Promise<void> {
    const held = this.#pinned.get(id);
    if (!held) return;
    this.#pinned.delete(id);
    await this.#releaseImages(held);
  }

  /**
   * The attributes of the root of `id`'s view, or undefined when it has none of its own (an empty
   * chain): overlay shows the nearest part's root, so only that part is read (one image mounted,
   * not the whole chain). The caller holds `id`'s lock.
   */
  async #rootOf(id: string): Promise<NodeInit | undefined> {
    const [nearest] = await this.#parts(id);
    if (nearest === undefined) return undefined;
    const held = await this.#acquireImages([nearest]);
    try {
      return rootAttrs(this.sys, nearest.dir);
    } finally {
      await this.#releaseImages(held);
    }
  }
}

/** Build the erofs driver on `config.home`, or throw ErrNotSupported where EROFS or overlay cannot mount. */
export async function initErofs(config: DriverConfig): Promise<Driver> {
  rejectUnknownOptions("erofs", config.options, []);
  const filesystems = await fs.readFile("/proc/filesystems", "utf8").catch(() => "");
  if (!filesystems.includes("\terofs\n")) throw new ErrNotSupported("erofs: the kernel has no EROFS support (modprobe erofs)");
  if (!filesystems.includes("\toverlay\n")) throw new ErrNotSupported("erofs: the kernel has no overlayfs, which read-write layers need");
  const layout = new Layout(config.home);
  await fs.mkdir(config.home, { recursive: true, mode: 0o710 });
  await assertOwnDir(config.home);
  const rootGid = rootPair(config.uidMaps, config.gidMaps).gid;
  if (rootGid !== 0) await fs.chown(config.home, process.getuid?.() ?? 0, rootGid);
  for (const dir of [layout.tmpDir, layout.linkDir]) {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await assertOwnDir(dir);
  }
  // One empty image, mounted once: whether this kernel mounts EROFS files directly, and that mounting works at all.
  const probe = await fs.mkdtemp(path.join(layout.tmpDir, STAGING.probe));
  let mode;
  try {
    const image = path.join(probe, IMAGE_FILE);
    await writeImageFromTar(new ReadableStream({ start: (c) => c.close() }), image);
    await fs.mkdir(path.join(probe, "mnt"));
    mode = probeImageMode(config.sys, image, path.join(probe, "mnt"));
  } catch (err) {
    throw new ErrNotSupported(`erofs: cannot mount an EROFS image here: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await removeBeneath(config.sys, path.dirname(probe), path.basename(probe));
  }
  const upperOnly = (await nativeDiffProblem()) === null;
  const driver = new ErofsDriver(config, new ImageMounts(config.sys, config.log, mode), backingFs(config.sys, config.home), await pageSize(), upperOnly);
  await driver.recover();
  return driver;
}

