/**
 * Extracting a layer tar into a directory, as moby's `UnpackLayer` does: entries replace what is
 * there (a directory over a directory merges), AUFS whiteouts delete or become overlay whiteouts,
 * and directory times are set last. Unlike moby (which runs in a chroot or through os.Root) the
 * confinement is done here: nothing outside `dir` is ever created, changed or deleted.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { IdMap } from "../core/driver.ts";
import { hasCode, InvalidLayerError } from "../core/errors.ts";
import { FAULT, FAULT_MID_EXTRACT_ENTRIES, faultPoint } from "../core/fault.ts";
import { DT, type Sys } from "../sys/types.ts";
import { baseOf, cleanEntryName, ConfinedRoot, parentOf } from "./_confine.ts";
import { isDirMode, mknodType, S_IF } from "./_file-type.ts";
import { toHost } from "./_id-map.ts";
import { FileWrites } from "./_file-writes.ts";
import { type Metadata, setMetadata } from "./_metadata.ts";
import { readTar } from "./tar-reader.ts";
import { OVERLAY_OPAQUE_XATTR, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, isOverlayXattr } from "./whiteouts.ts";
import type { TarEntry, TarHeader } from "./tar-types.ts";

/** Mode of directories a layer implies without listing them (moby's ImpliedDirectoryMode). */
const IMPLIED_DIR_MODE = 0o755;

/** Options of `applyLayer`. */
export interface ApplyOptions {
  sys: Sys;
  /** "delete": whiteouts remove what they name (vfs, a base layer). "overlay": they become overlayfs whiteouts. */
  whiteouts: "delete" | "overlay";
  /** Container → host UID map; ids are stored shifted when given. */
  uidMaps?: IdMap[];
  /** Container → host GID map. */
  gidMaps?: IdMap[];
}

/**
 * Extract the uncompressed layer `tar` into `dir`; returns the sum of the entries' sizes, as
 * moby's UnpackLayer counts it (whiteouts and skipped entries included). Throws InvalidLayerError
 * for an entry that would reach outside `dir` (`..`, a path through a symlink, a hardlink out).
 * @example
 * const size = await applyLayer("/var/lib/strata/vfs/dir/abc", request.body!, { sys, whiteouts: "delete" });
 */
export async function applyLayer(dir: string, tar: ReadableStream<Uint8Array>, opts: ApplyOptions): Promise<number> {
  const root = new ConfinedRoot(path.resolve(dir), opts.sys);
  const applier = new _Applier(root, opts, new FileWrites(opts.sys));
  let size = 0;
  let entries = 0;
  for await (const entry of readTar(tar)) {
    size += entry.header.size;
    await applier.apply(entry);
    if (++entries === FAULT_MID_EXTRACT_ENTRIES) faultPoint(FAULT.applyMidExtract);
  }
  // Last, as moby does: creating a child changes its directory's mtime.
  for (const [rel, mtime] of root.pendingTimes()) opts.sys.lutimes(root.abs(rel), mtime, mtime);
  return size;
}

/** True for AUFS metadata: a component starting with `.wh..wh.`, other than a final opaque marker. */
function _isAufsMeta(rel: string): boolean {
  for (let at = 0; ; ) {
    const slash = rel.indexOf("/", at);
    const name = slash < 0 ? rel.slice(at) : rel.slice(at, slash);
    if (name.startsWith(WHITEOUT_META_PREFIX) && !(slash < 0 && name === WHITEOUT_OPAQUE)) return true;
    if (slash < 0) return false;
    at = slash + 1;
  }
}


class _Applier {
  #root: ConfinedRoot;
  #opts: ApplyOptions;
  #sys: Sys;
  /** Paths this layer wrote (or implied): an opaque marker in "delete" mode keeps only these. */
  #unpacked = new Set<string>();
  #writes: FileWrites;
  #implied = (dirRel: string) => this.#makeImpliedDir(dirRel);

  constructor(root: ConfinedRoot, opts: ApplyOptions, writes: FileWrites) {
    this.#root = root;
    this.#opts = opts;
    this.#sys = opts.sys;
    this.#writes = writes;
  }

  async apply(entry: TarEntry): Promise<void> {
    const h = entry.header;
    const rel = cleanEntryName(h.name, h.name);
    if (rel.includes(WHITEOUT_PREFIX)) {
      if (_isAufsMeta(rel)) return;
      const base = baseOf(rel);
      if (base.startsWith(WHITEOUT_PREFIX)) return await this.#whiteout(rel, base, h);
    }
    if (rel === "") {
      if (h.type !== "directory") throw new InvalidLayerError(`Invalid layer entry "${h.name}": the layer root must be a directory`);
      this.#setMetadata(this.#root.root, h, false);
      this.#root.markDir("", h.mtime);
      return;
    }
    await this.#root.parents(rel, h.name, this.#implied);
    const abs = this.#root.abs(rel);
    if (h.type === "file") {
      // Most entries are new files: try the create first (O_EXCL), look at what is there only when it fails.
      try {
        await this.#writes.write(abs, entry.body, this.#metadata(h, false));
      } catch (err) {
        if (!hasCode(err, "EEXIST")) throw err;
        await this.#root.remove(rel);
        await this.#writes.write(abs, entry.body, this.#metadata(h, false));
      }
      this.#unpacked.add(rel);
      return;
    }
    const existing = this.#root.lstatMode(rel);
    const merge = existing !== null && isDirMode(existing) && h.type === "directory";
    if (existing !== null && !merge) await this.#root.remove(rel);
    switch (h.type) {
      case "directory":
        if (!merge) fs.mkdirSync(abs, { mode: h.mode & 0o777 });
        break;
      case "symlink":
        // The target is only text: it is never followed here, so it may point anywhere.
        fs.symlinkSync(h.linkname, abs);
        break;
      case "link":
        // A hardlink is another name for an inode already written with its own metadata. moby
        // re-applies the link header's owner and mode, which for a hand-made tar (GNU tar's
        // defaults) would clobber a setuid bit or drop security.capability: do as GNU tar does.
        await this.#link(abs, h);
        this.#unpacked.add(rel);
        return;
      case "char":
      case "block":
      case "fifo":
        this.#sys.mknod(abs, mknodType(h.type) | (h.mode & 0o777), h.devmajor, h.devminor);
        break;
    }
    this.#setMetadata(abs, h, h.type === "symlink");
    this.#unpacked.add(rel);
    if (h.type === "directory") this.#root.markDir(rel, h.mtime);
  }

  #metadata(h: TarHeader, symlink: boolean): Metadata {
    return {
      uid: toHost(this.#opts.uidMaps, h.uid, "UID"),
      gid: toHost(this.#opts.gidMaps, h.gid, "GID"),
      mode: h.mode,
      xattrs: h.xattrs.size === 0 ? [] : [...h.xattrs].filter(([name]) => !isOverlayXattr(name)),
      atime: h.mtime,
      mtime: h.mtime,
      symlink,
    };
  }

  #setMetadata(abs: string, h: TarHeader, symlink: boolean): void {
    setMetadata(this.#sys, abs, this.#metadata(h, symlink), true);
  }

  /** A hardlink to a path inside the layer, never reached through a symlink. */
  async #link(abs: string, h: TarHeader): Promise<void> {
    // Absolute targets (written by some builders) are relative to the layer root, as in moby.
    const target = cleanEntryName(h.linkname, h.name);
    if (target === "") throw new InvalidLayerError(`Invalid layer entry "${h.name}": a hardlink to the layer root`);
    await this.#root.parents(target, h.name);
    try {
      // link(2) does not follow a symlink named as its source on Linux: it links the symlink itself.
      fs.linkSync(this.#root.abs(target), abs);
    } catch (err) {
      // Also what a link into AUFS's skipped `.wh..wh.plnk` looks like.
      if (hasCode(err, "ENOENT")) throw new InvalidLayerError(`Invalid layer entry "${h.name}": hardlink target "${h.linkname}" does not exist`);
      throw err;
    }
  }

  /** A directory the archive uses without listing it: 0755, owned by the container's root. */
  async #makeImpliedDir(dirRel: string): Promise<void> {
    const abs = this.#root.abs(dirRel);
    fs.mkdirSync(abs, { mode: IMPLIED_DIR_MODE });
    this.#sys.lchown(abs, toHost(this.#opts.uidMaps, 0, "UID"), toHost(this.#opts.gidMaps, 0, "GID"));
    fs.chmodSync(abs, IMPLIED_DIR_MODE); // mkdir's mode went through the umask
    // Unlike moby, a directory this layer implies is its own: an opaque marker keeps it.
    this.#unpacked.add(dirRel);
  }

  async #whiteout(rel: string, base: string, h: TarHeader): Promise<void> {
    const original = base.slice(WHITEOUT_PREFIX.length);
    if (original === "" || original === "." || original === "..") {
      throw new InvalidLayerError(`Invalid layer entry "${h.name}": a whiteout must name a file`);
    }
    await this.#root.parents(rel, h.name, this.#implied);
    const dirRel = parentOf(rel);
    if (base === WHITEOUT_OPAQUE) {
      if (this.#opts.whiteouts === "overlay") this.#sys.lsetxattr(this.#root.abs(dirRel), OVERLAY_OPAQUE_XATTR, new Uint8Array([0x79]));
      else await this.#removeNotUnpacked(dirRel);
      return;
    }
    const target = dirRel === "" ? original : `${dirRel}/${original}`;
    await this.#root.remove(target);
    if (this.#opts.whiteouts === "overlay") {
      // overlayfs's whiteout: a character device 0/0, owned like the AUFS entry was.
      const abs = this.#root.abs(target);
      this.#sys.mknod(abs, S_IF.CHR, 0, 0);
      this.#sys.lchown(abs, toHost(this.#opts.uidMaps, h.uid, "UID"), toHost(this.#opts.gidMaps, h.gid, "GID"));
    }
  }

  /** The AUFS opaque marker in "delete" mode: remove everything under `dirRel` this layer did not write. */
  async #removeNotUnpacked(dirRel: string): Promise<void> {
    for (const e of this.#sys.readdirTypes(this.#root.abs(dirRel))) {
      const rel = dirRel === "" ? e.name : `${dirRel}/${e.name}`;
      if (!this.#unpacked.has(rel)) {
        await this.#root.remove(rel);
        continue;
      }
      const isDir = e.type === DT.UNKNOWN ? isDirMode(this.#root.lstatMode(rel) ?? 0) : e.type === DT.DIR;
      if (isDir) await this.#removeNotUnpacked(rel);
    }
  }
}
