/**
 * Layers on disk: create (built in `.tmp/new-…`, renamed into place), remove (renamed to
 * `.tmp/rm-…`, deleted after), the lower chain and link names, and the reconciliation a restart
 * needs. No mounts here: `mounts.ts` owns those.
 */
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { isOverlayXattr } from "../../src/archive/whiteouts.ts";
import { AlreadyExistsError, NotFoundError, StrataError, hasCode } from "../../src/core/errors.ts";
import { FAULT, faultPoint } from "../../src/core/fault.ts";
import type { Logger } from "../../src/core/log.ts";
import type { Sys } from "../../src/sys/types.ts";
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import { entryPath } from "../../src/store/names.ts";
import { assertOwnDir, notOwn, ownEntry } from "../../src/store/own.ts";
import { publish, syncEntry, syncParent } from "../../src/store/durable.ts";
import { removeBeneath } from "../../src/store/remove-tree.ts";
import { Staging } from "../../src/store/staging.ts";
import type { QuotaImages } from "./quota.ts";
import {
  DIFF_DIR, IMAGE_SUFFIX, LINK_DIR, LINK_FILE, LOWER_FILE, Layout, TMP_DIR, WORK_DIR, childLowers, formatLower,
  idOfLinkTarget, imageName, isLinkId, linkTarget, newLinkId, parseLower,
} from "./layout.ts";

/** Temp dir prefixes under `.tmp/`. */
export const TMP_PREFIX = { create: "new-", remove: "rm-", apply: "apply-", check: "check-" } as const;

/** Layer directories and files, per ID; callers hold the ID's lock. */
export class LayerStore {
  readonly layout: Layout;
  #sys: Sys;
  #log: Logger;
  #root: { uid: number; gid: number };
  #quota: QuotaImages;
  #staging: Staging;

  constructor(layout: Layout, sys: Sys, log: Logger, root: { uid: number; gid: number }, quota: QuotaImages) {
    this.layout = layout;
    this.#sys = sys;
    this.#log = log;
    this.#root = root;
    this.#quota = quota;
    this.#staging = new Staging(layout.tmpDir, sys, log);
  }

  /** Delete a temp entry (`tmp`, `tmpBeside`) and what is below it; failures are logged. */
  async discard(p: string, id: string, what: string): Promise<void> {
    await this.#staging.discard(p, id, what);
  }

  /** A fresh path under `.tmp/`. */
  tmp(prefix: string, id: string): string {
    return this.#staging.path(prefix, id);
  }

  /** Whether the layer has its own filesystem image (a real file in `.quota/`). */
  async hasImage(id: string): Promise<boolean> {
    const image = this.layout.quotaImage(id);
    return image !== null && (await ownEntry(image, "file")) === "ok";
  }

  /**
   * A fresh temp path on the same filesystem as the layer's files, for work that ends in a rename
   * into the layer: `.tmp/` for most layers, `<id>/.tmp/` inside a size-limited layer's own image.
   */
  async tmpBeside(prefix: string, id: string): Promise<string> {
    if (!(await this.hasImage(id))) return this.tmp(prefix, id);
    const dir = path.join(this.layout.layer(id), TMP_DIR);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await assertOwnDir(dir);
    return this.#staging.path(prefix, id, dir);
  }

  /**
   * Whether the layer exists: its directory is a real one holding a `link` file (a size-limited
   * layer's dir is empty until mounted). A symlink in the layer's place is no layer.
   */
  async exists(id: string): Promise<boolean> {
    return (await ownEntry(this.layout.layer(id), "dir")) === "ok" && (await ownEntry(this.layout.linkFile(id), "file")) === "ok";
  }

  /**
   * Throw unless the layer's own entries that a mount, Get or diff uses are what strata made:
   * `diff/` (and `work/`, `merged/` when there) directories, never symlinks out of Home.
   */
  async assertSound(id: string): Promise<void> {
    if (this.#sound.has(id)) return;
    await assertOwnDir(this.layout.diff(id));
    await assertOwnDir(this.layout.work(id), true);
    await assertOwnDir(this.layout.merged(id), true);
    for (const file of [this.layout.lowerFile(id), this.layout.linkFile(id)]) {
      if ((await ownEntry(file, "file")) === "foreign") throw await notOwn(file, "file");
    }
    this.#sound.add(id);
  }

  /** Throw NotFoundError unless the layer exists; `action` completes "Cannot … layer "id"". */
  async mustExist(id: string, action: string): Promise<void> {
    if (!(await this.exists(id))) throw new NotFoundError(`Cannot ${action} layer "${id}": it does not exist`);
  }

  /** The layer's lower chain (".l/LINK" entries, parent first); empty for a base layer. */
  async lowers(id: string): Promise<string[]> {
    let chain = this.#lowers.get(id);
    if (chain === undefined) {
      try {
        chain = parseLower(await fs.readFile(this.layout.lowerFile(id), "utf8"));
      } catch (err) {
        if (!hasCode(err, "ENOENT")) throw err;
        chain = [];
      }
      this.#lowers.set(id, chain);
    }
    return [...chain];
  }

  /** The layer's link name. */
  async linkId(id: string): Promise<string> {
    const text = (await fs.readFile(this.layout.linkFile(id), "utf8")).trim();
    if (!isLinkId(text)) throw new StrataError(`Layer "${id}" has a corrupt link file`);
    return text;
  }

  /** The real directories of the lower chain, parent first (what GetMetadata reports as LowerDir). */
  async lowerDirs(id: string): Promise<string[]> {
    const out: string[] = [];
    for (const entry of await this.lowers(id)) {
      let dir = this.#linkTargets.get(entry);
      if (dir === undefined) {
        const link = this.layout.absolute(entry);
        dir = path.resolve(path.dirname(link), await fs.readlink(link));
        this.#linkTargets.set(entry, dir);
      }
      out.push(dir);
    }
    return out;
  }

  /** The ID of the layer's parent, from its first lower link; "" for a base layer. */
  async parentOf(id: string): Promise<string> {
    const [first] = await this.lowers(id);
    if (first === undefined) return "";
    const parent = idOfLinkTarget(await fs.readlink(this.layout.absolute(first)));
    if (parent === null) throw new StrataError(`Layer "${id}" has a corrupt lower link "${first}"`);
    return parent;
  }

  /** Whether a child was ever created on the layer (overlay2 then mounts it read-only). */
  async committed(id: string): Promise<boolean> {
    return existsSync(this.layout.committedFile(id));
  }

  /**
   * Build the layer in a temp dir and rename it into place. A child's upper dir starts with its
   * parent's root attributes, so the mounted root looks exactly like the parent's until changed.
   * With `sizeBytes` the layer gets its own filesystem image of that size (see `quota.ts`).
   */
  async create(id: string, parent: string, maxLowers: number, sizeBytes = 0): Promise<void> {
    const dir = this.layout.layer(id);
    this.forget(id);
    if (await this.exists(id)) throw new AlreadyExistsError(`Cannot create layer "${id}": it already exists`);
    let lowers: string[] = [];
    if (parent) {
      await this.mustExist(parent, `create layer "${id}" on`);
      lowers = childLowers(await this.linkId(parent), await this.lowers(parent));
      if (lowers.length > maxLowers) {
        throw new StrataError(`Cannot create layer "${id}": its chain of ${lowers.length + 1} layers is deeper than this host can mount (${maxLowers + 1})`);
      }
    }
    const placed = sizeBytes > 0 ? entryPath(this.layout.quotaDir, imageName(id)) : null;
    const staging = this.tmp(TMP_PREFIX.create, id);
    const image = sizeBytes > 0 ? `${staging}${IMAGE_SUFFIX}` : null;
    let link: string | undefined;
    let stagingMounted = false;
    let placedImage = false;
    try {
      await fs.mkdir(staging, { mode: 0o710 });
      if (image !== null) {
        await this.#quota.format(image, sizeBytes);
        this.#quota.mount(image, staging);
        stagingMounted = true;
        await fs.chmod(staging, 0o710);
      }
      await fs.chown(staging, process.getuid?.() ?? 0, this.#root.gid);
      link = await this.#populate(staging, id, parent, lowers);
      // The link in .l/ must outlive a power cut as the layer does.
      await syncParent(this.#sys, link);
      if (image === null || placed === null) {
        faultPoint(FAULT.createBeforeRename);
        await publish(this.#sys, staging, dir, "entries");
      } else {
        // A mount point cannot be renamed: the finished filesystem is unmounted and mounted again on
        // the layer's own directory. The layer exists once that mount shows its link file. After a
        // crash the next start deletes an image still in `.tmp/` and mounts one already in `.quota/`
        // (it is complete by then).
        faultPoint(FAULT.createStagingMounted);
        this.#quota.unmount(staging);
        stagingMounted = false;
        // The unmount wrote the filesystem out to the image file; the image's own data is synced here.
        await syncEntry(this.#sys, image);
        faultPoint(FAULT.createBeforeRename);
        await fs.rename(image, placed);
        await syncParent(this.#sys, placed);
        placedImage = true;
        await fs.mkdir(dir, { mode: 0o710 }).catch((err) => {
          if (!hasCode(err, "EEXIST")) throw err;
        });
        await syncParent(this.#sys, dir);
        faultPoint(FAULT.createBeforeMount);
        this.#quota.mount(placed, dir);
        await fs.rmdir(staging).catch((e) => this.#log.warn("create left a temp dir", { id, err: String(e) }));
      }
    } catch (err) {
      if (stagingMounted) {
        try {
          this.#quota.unmount(staging);
        } catch (e) {
          // Left mounted in `.tmp/`: the next start unmounts it before emptying `.tmp/`.
          this.#log.warn("create left a mount", { id, err: String(e) });
        }
      }
      await this.#staging.discard(staging, id, "create");
      if (image !== null) await fs.rm(image, { force: true });
      if (placedImage) {
        await fs.rmdir(dir).catch(() => {});
        await fs.rm(placed!, { force: true });
      }
      if (link) await fs.unlink(link).catch(() => {});
      throw err;
    }
    if (parent) {
      faultPoint(FAULT.createBeforeMarkParent);
      await this.markCommitted(parent);
    }
  }

  /**
   * Record that the layer is sealed (a child was built on it, or the snapshotter committed it);
   * "wx" never writes through a symlink planted in the marker's place.
   */
  async markCommitted(id: string): Promise<void> {
    const file = this.layout.committedFile(id);
    const made = await fs.writeFile(file, "", { mode: 0o600, flag: "wx" }).then(() => true, async (err) => {
      if (!hasCode(err, "EEXIST")) throw err;
      if ((await ownEntry(file, "file")) !== "ok") this.#log.warn("a layer's committed marker is not a file: left alone", { id });
      return false;
    });
    if (made) await syncParent(this.#sys, file);
  }

  /** Fill a new layer's directory: diff (and work and lower with a parent), a fresh link. Returns the link's path. */
  async #populate(staging: string, id: string, parent: string, lowers: string[]): Promise<string> {
    const diff = path.join(staging, DIFF_DIR);
    await fs.mkdir(diff, { mode: 0o755 });
    if (parent) {
      await this.copyRootAttrs(this.layout.diff(parent), diff);
      await fs.mkdir(path.join(staging, WORK_DIR), { mode: 0o700 });
      await fs.chown(path.join(staging, WORK_DIR), this.#root.uid, this.#root.gid);
      await fs.writeFile(path.join(staging, LOWER_FILE), formatLower(lowers), { mode: 0o644 });
    } else {
      await fs.chown(diff, this.#root.uid, this.#root.gid);
    }
    let linkId = newLinkId();
    await assertOwnDir(this.layout.linkDir);
    for (;;) {
      try {
        await fs.symlink(linkTarget(id), this.layout.link(linkId));
        break;
      } catch (err) {
        if (!hasCode(err, "EEXIST")) throw err;
        linkId = newLinkId();
      }
    }
    // Written last: a layer whose link file exists is complete.
    await fs.writeFile(path.join(staging, LINK_FILE), linkId, { mode: 0o644 });
    return this.layout.link(linkId);
  }

  /** Give `to` the mode, owner, times and (non-overlay) xattrs of directory `from`. */
  async copyRootAttrs(from: string, to: string): Promise<void> {
    const st = this.#sys.lstat(from);
    for (const name of this.#sys.llistxattr(from)) {
      if (isOverlayXattr(name)) continue;
      const value = this.#sys.lgetxattr(from, name);
      if (value !== null) this.#sys.lsetxattr(to, name, value);
    }
    this.#sys.lchown(to, st.uid, st.gid);
    await fs.chmod(to, st.mode & 0o7777);
    this.#sys.lutimes(to, st.atime, st.mtime);
  }

  /**
   * Move the layer out of the way, drop its link, delete it. Unknown layers are fine. A plain
   * layer is renamed into `.tmp/`; a size-limited one is unmounted (its files are its image's, so
   * no link file shows any more) and its image renamed into `.tmp/`. A crash before that rename
   * brings it back whole at the next start.
   */
  async remove(id: string): Promise<void> {
    this.forget(id);
    const dir = this.layout.layer(id);
    if ((await ownEntry(dir, "dir")) === "foreign") {
      this.#log.warn("a layer's place holds something that is not a directory: left alone", { id, path: dir });
      return;
    }
    const linkId = (await this.exists(id)) ? await this.linkId(id).catch(() => null) : null;
    let doomed: string;
    const image = this.layout.quotaImage(id);
    if (image !== null && (await this.hasImage(id))) {
      this.#quota.unmount(dir);
      faultPoint(FAULT.removeAfterUnmount);
      doomed = `${this.tmp(TMP_PREFIX.remove, id)}${IMAGE_SUFFIX}`;
      await fs.rename(image, doomed);
      await fs.rmdir(dir).catch((e) => this.#log.warn("remove left a directory", { id, err: String(e) }));
    } else {
      const aside = await this.#staging.moveAside(dir, TMP_PREFIX.remove, id);
      if (aside === null) return;
      doomed = aside;
    }
    // Durably gone under its name before the caller hears so; the delete after may take its time.
    await syncParent(this.#sys, image !== null && doomed.endsWith(IMAGE_SUFFIX) ? image : dir);
    faultPoint(FAULT.removeBeforeDelete);
    if (linkId) await this.#unlinkLink(linkId).catch((e) => this.#log.warn("remove left a link", { id, err: String(e) }));
    // The layer is gone once renamed; what fails to delete now goes at the next start.
    await this.#staging.discard(doomed, id);
  }

  /**
   * Where each `.l/` link points, once read: a link is made with its layer, never changed, and its
   * random name never reused, so a deep chain costs one readlink per layer once instead of on every
   * Mounts (a 100-layer import read 5,250 links).
   */
  #linkTargets = new Map<string, string>();

  /**
   * What is read once per layer and process: its lower chain (written at create, never changed) and
   * that its own entries passed `assertSound` (strata never replaces them; a restart checks again).
   * Remove and create drop both.
   */
  #lowers = new Map<string, string[]>();
  #sound = new Set<string>();

  /** Drop what is cached for the layer. */
  forget(id: string): void {
    this.#lowers.delete(id);
    this.#sound.delete(id);
  }

  /** Remove a short link as a link; anything else in `.l/` (a planted directory or file) is left alone. */
  async #unlinkLink(linkId: string): Promise<void> {
    const link = this.layout.link(linkId);
    const st = await fs.lstat(link).catch(() => null);
    if (st === null) return;
    if (!st.isSymbolicLink()) {
      this.#log.warn("an entry of .l/ is not a link: left alone", { link: linkId });
      return;
    }
    this.#linkTargets.delete(path.relative(this.layout.home, link));
    await fs.unlink(link);
  }

  /** Layer IDs on disk: real directories named like layer IDs (not lost+found, not a symlink). */
  async ids(): Promise<string[]> {
    const entries = await fs.readdir(this.layout.home, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory() && e.name !== LINK_DIR && LAYER_ID_PATTERN.test(e.name)).map((e) => e.name);
  }

  /**
   * Bring size-limited layers back after a reboot or crash: mount every image in `.quota/` whose
   * layer is not mounted (`mounted` holds the IDs that are), recreating the layer's directory if a
   * crash came before it was made (the image is complete by then), and remove directories that
   * hold no layer (an empty mount point a cut-short remove left).
   */
  async recoverImages(mounted: ReadonlySet<string>): Promise<void> {
    const names = await fs.readdir(this.layout.quotaDir).catch((err) => {
      if (hasCode(err, "ENOENT")) return [] as string[];
      throw err;
    });
    for (const name of names) {
      const id = name.endsWith(IMAGE_SUFFIX) ? name.slice(0, -IMAGE_SUFFIX.length) : "";
      if (!LAYER_ID_PATTERN.test(id)) continue;
      const dir = this.layout.layer(id);
      if (!(await this.hasImage(id))) {
        this.#log.warn("an entry of .quota/ is not a regular file: left alone", { name });
        continue;
      }
      if (mounted.has(id)) {
        await removeBeneath(this.#sys, dir, TMP_DIR);
        continue;
      }
      try {
        await fs.mkdir(dir, { mode: 0o710 }).catch((err) => {
          if (!hasCode(err, "EEXIST")) throw err;
        });
        // A mount follows a symlink: one planted in the layer's place must not get the image mounted on its target.
        await assertOwnDir(dir);
        this.#quota.mount(this.layout.quotaImage(id)!, dir);
        this.#log.info("mounted a layer image", { id });
        await removeBeneath(this.#sys, dir, TMP_DIR);
      } catch (err) {
        this.#log.error("cannot mount a layer image", { id, err: String(err) });
      }
    }
    for (const id of await this.ids()) {
      if (await this.exists(id)) continue;
      await fs.rmdir(this.layout.layer(id)).then(
        () => this.#log.info("removed an empty layer directory", { id }),
        (e) => this.#log.warn("a directory under Home is not a layer", { id, err: String(e) }),
      );
    }
  }

  /**
   * After a crash: delete what `.tmp/` holds (unfinished creates and applies, removes not yet
   * deleted), drop links whose layer is gone, and restore links a layer lost. Mounts under Home
   * must already be gone (`Mounts.clearStale`), or the deletes would reach into them.
   */
  async recover(): Promise<void> {
    for (const name of await fs.readdir(this.layout.tmpDir)) {
      // What cannot go (a mount left inside, a link on the way) is reported and left for a later start.
      await this.#staging.discard(path.join(this.layout.tmpDir, name), name, "recovery", FAULT.recoverMidRemove);
    }
    const wanted = new Map<string, string>();
    for (const id of await this.ids()) {
      const linkId = (await this.exists(id)) ? await this.linkId(id).catch(() => null) : null;
      if (linkId) wanted.set(linkId, id);
    }
    for (const linkId of await fs.readdir(this.layout.linkDir)) {
      if (!isLinkId(linkId)) {
        this.#log.warn("an entry of .l/ is no link of ours: left alone", { name: linkId.slice(0, 80) });
        continue;
      }
      const id = wanted.get(linkId);
      const target = await fs.readlink(this.layout.link(linkId)).catch(() => null);
      if (id !== undefined && target === linkTarget(id)) {
        wanted.delete(linkId);
        continue;
      }
      if (target === null) {
        this.#log.warn("an entry of .l/ is not a link: left alone", { link: linkId });
        wanted.delete(linkId);
        continue;
      }
      await this.#unlinkLink(linkId);
      this.#log.info("dropped a stale link", { link: linkId });
    }
    for (const [linkId, id] of wanted) {
      await fs.symlink(linkTarget(id), this.layout.link(linkId));
      this.#log.info("restored a missing link", { id, link: linkId });
    }
  }
}
