/**
 * A layer tar straight into an EROFS image, in one pass: the same entry semantics as the
 * directory apply (`src/archive/apply.ts`) — later entries replace earlier ones, a directory over
 * a directory merges, AUFS whiteouts become overlay whiteouts (0/0 character devices and
 * `trusted.overlay.opaque=y`), ids are shifted through the maps — and the same refusals: a hostile
 * tar gives an InvalidLayerError and no image.
 */
import type { IdMap } from "../core/driver.ts";
import { InvalidLayerError } from "../core/errors.ts";
import { baseOf, cleanEntryName } from "../archive/_confine.ts";
import { toHost } from "../archive/_id-map.ts";
import { readTar, type TarLimits } from "../archive/tar-reader.ts";
import type { TarHeader } from "../archive/tar-types.ts";
import { isOverlayXattr, OVERLAY_OPAQUE_XATTR, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX } from "../archive/whiteouts.ts";
import type { ImageNode, NodeInit, NodeType } from "./image-tree.ts";
import { ErofsWriter, type ErofsWriterOptions, type ImageStats, newNode } from "./image-writer.ts";
import { encodeXattrs } from "./_xattrs.ts";

/** Mode of directories a layer implies without listing them (moby's ImpliedDirectoryMode). */
const IMPLIED_DIR_MODE = 0o755;
/** Linux's PATH_MAX: symlink(2) refuses a target this long or longer. */
const SYMLINK_MAX = 4096;
/** The kernel's dev_t: 12-bit major, 20-bit minor. */
const MAJOR_MAX = 0xfff;
const MINOR_MAX = 0xfffff;

/** Options of `writeImageFromTar`. */
export interface FromTarOptions extends ErofsWriterOptions {
  /** Container → host UID map; ids are stored shifted when given. */
  uidMaps?: IdMap[];
  /** Container → host GID map. */
  gidMaps?: IdMap[];
  /** The tar reader's limits. */
  limits?: TarLimits;
  /** fsync the image before returning. */
  sync?: boolean;
  /**
   * The root's attributes (host ids) when the tar does not list "./": a layer's root looks like its
   * parent's, as the directory drivers copy it. Default: 0755, the mapped root, the build time.
   */
  root?: NodeInit;
  /** Called after each entry with the count so far (fault injection). */
  onEntry?: (entries: number) => void;
}

/** What `writeImageFromTar` reports. */
export interface FromTarResult extends ImageStats {
  /** Sum of the entries' sizes, as moby's UnpackLayer counts it (ApplyDiff's answer). */
  tarSize: number;
}

const _TYPES: Record<string, NodeType> = { file: "file", directory: "dir", symlink: "symlink", char: "char", block: "block", fifo: "fifo" };
const _utf8 = new TextEncoder();

/**
 * Write the uncompressed layer `tar` as an EROFS image at `path`, which must not exist. On any
 * failure the partial image is removed and the error rethrown (InvalidLayerError for a bad tar).
 * @example
 * const { tarSize } = await writeImageFromTar(request.body!, "/var/lib/strata/erofs/layers/abc.erofs.tmp", { sync: true });
 */
export async function writeImageFromTar(tar: ReadableStream<Uint8Array>, path: string, opts: FromTarOptions = {}): Promise<FromTarResult> {
  const ids = (uid: number, gid: number) => ({ uid: toHost(opts.uidMaps, uid, "UID"), gid: toHost(opts.gidMaps, gid, "GID") });
  const rootIds = ids(0, 0);
  const rootInit = opts.root ? { ...opts.root, xattrs: new Map(opts.root.xattrs) } : { mode: IMPLIED_DIR_MODE, ...rootIds, mtime: null };
  const writer = await ErofsWriter.create(path, newNode("dir", rootInit), opts);
  const tree = writer.tree;
  const implied = () => newNode("dir", { mode: IMPLIED_DIR_MODE, ...rootIds, mtime: null });
  let tarSize = 0;
  let entries = 0;
  try {
    for await (const entry of readTar(tar, opts.limits)) {
      opts.onEntry?.(entries++);
      const h = entry.header;
      tarSize += h.size;
      const rel = cleanEntryName(h.name, h.name);
      const refuse = (why: string) => new InvalidLayerError(`Invalid layer entry "${h.name}": ${why}`);
      if (rel.includes(WHITEOUT_PREFIX)) {
        if (_isAufsMeta(rel)) continue;
        const base = baseOf(rel);
        if (base.startsWith(WHITEOUT_PREFIX)) {
          const original = base.slice(WHITEOUT_PREFIX.length);
          if (original === "" || original === "." || original === "..") throw refuse("a whiteout must name a file");
          const dir = tree.parentOf(rel, h.name, implied);
          if (base === WHITEOUT_OPAQUE) {
            dir.xattrs.set(OVERLAY_OPAQUE_XATTR, Uint8Array.of(0x79));
            continue;
          }
          tree.detach(dir, original);
          // overlayfs's whiteout: a character device 0/0, owned like the AUFS entry was.
          tree.attach(dir, original, newNode("char", { mode: 0, ...ids(h.uid, h.gid), mtime: h.mtime }), h.name);
          continue;
        }
      }
      if (rel === "") {
        if (h.type !== "directory") throw refuse("the layer root must be a directory");
        _setMeta(tree.root, h, ids, true, refuse);
        continue;
      }
      const dir = tree.parentOf(rel, h.name, implied);
      const name = baseOf(rel);
      const existing = dir.children!.get(name);
      if (existing?.type === "dir" && h.type === "directory") {
        _setMeta(existing, h, ids, true, refuse);
        continue;
      }
      if (existing) tree.detach(dir, name);
      if (h.type === "link") {
        // Absolute targets (written by some builders) are relative to the layer root, as in moby.
        const target = cleanEntryName(h.linkname, h.name);
        if (target === "") throw refuse("a hardlink to the layer root");
        const node = tree.lookup(target, h.name);
        if (!node) throw refuse(`hardlink target "${h.linkname}" does not exist`);
        if (node.type === "dir") throw refuse(`hardlink target "${h.linkname}" is a directory`);
        // The link's own header metadata is not applied (as GNU tar): it would clobber a setuid bit.
        tree.link(dir, name, node, h.name);
        continue;
      }
      const node = newNode(_TYPES[h.type], { mode: h.mode, uid: 0, gid: 0, mtime: h.mtime });
      _setMeta(node, h, ids, false, refuse);
      switch (h.type) {
        case "file":
          await writer.writeData(node, h.size, entry.body);
          break;
        case "symlink": {
          const target = _utf8.encode(h.linkname);
          if (target.byteLength === 0) throw refuse("a symlink with an empty target");
          if (target.byteLength >= SYMLINK_MAX) throw refuse(`a symlink target of ${SYMLINK_MAX} bytes or more`);
          node.target = target;
          node.size = target.byteLength;
          // A symlink's own mode means nothing on Linux, and symlink(2) always makes it 0777.
          node.mode = 0o777;
          break;
        }
        case "char":
        case "block":
          if (h.devmajor > MAJOR_MAX || h.devminor > MINOR_MAX) throw refuse(`device ${h.devmajor}:${h.devminor} is beyond what Linux can name`);
          node.rdevMajor = h.devmajor;
          node.rdevMinor = h.devminor;
          break;
      }
      tree.attach(dir, name, node, h.name);
    }
    return { ...(await writer.finish({ sync: opts.sync })), tarSize };
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/**
 * An entry's owner, mode, time and xattrs onto `node`. A merged directory keeps attributes it
 * already had (as setting xattrs on an existing directory does); overlay's own attributes never
 * come from a tar, and user.* ones only stay on files and directories (the only inodes the
 * kernel lets carry them).
 */
function _setMeta(
  node: ImageNode,
  h: TarHeader,
  ids: (uid: number, gid: number) => { uid: number; gid: number },
  merge: boolean,
  refuse: (why: string) => Error,
): void {
  const { uid, gid } = ids(h.uid, h.gid);
  node.uid = uid;
  node.gid = gid;
  node.mode = h.mode & 0o7777;
  node.mtime = h.mtime;
  if (!Number.isInteger(h.mtime.nsec) || h.mtime.nsec < 0 || h.mtime.nsec >= 1e9) throw refuse("a time with bad nanoseconds");
  const xattrs = merge ? node.xattrs : new Map<string, Uint8Array>();
  const userOk = node.type === "file" || node.type === "dir";
  for (const [name, value] of h.xattrs) {
    if (isOverlayXattr(name)) continue;
    if (name.startsWith("user.") && !userOk) continue;
    xattrs.set(name, value);
  }
  const encoded = encodeXattrs(xattrs);
  if (typeof encoded === "string") throw refuse(encoded);
  node.xattrs = xattrs;
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
