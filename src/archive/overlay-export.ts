/**
 * A layer Diff straight from an overlay upper dir, converted to AUFS form on the way out (what
 * moby's overlayWhiteoutConverter.ConvertWrite does): a whiteout (character device 0/0) becomes a
 * `.wh.NAME` entry, an opaque directory (`trusted.overlay.opaque=y`) gains a `.wh..wh..opq` entry,
 * and overlay's own attributes (`trusted.overlay.*`) stay behind. Entries are written as
 * `exportChanges` writes them (same order, headers, whiteouts), so a native Diff and a naive one
 * of the same changes are the same bytes.
 */
import type { IdMap } from "../core/driver.ts";
import { DT, type Sys } from "../sys/types.ts";
import { EntryWriter, isOverlayWhiteout, whiteoutName } from "./_entry-writer.ts";
import { isDirMode } from "./_file-type.ts";
import { yieldToLoop } from "../core/yield.ts";
import { OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, isOverlayXattr } from "./whiteouts.ts";
import { comparePaths } from "./changes.ts";
import { TarWriter } from "./tar-writer.ts";
import { type Tree, isGone, withTree } from "./tree.ts";

/** Paths looked at between two yields to the event loop. */
const YIELD_EVERY = 1024;

/** Options of `exportUpper`. */
export interface ExportUpperOptions {
  sys: Sys;
  /** Host → container UID map: owners are written as the container sees them. */
  uidMaps?: IdMap[];
  /** Host → container GID map. */
  gidMaps?: IdMap[];
}

/** Whether an xattr is overlay's bookkeeping rather than the file's own. */

/** Every path under the tree ("a/b"), sorted as moby sorts change paths. */
async function _paths(tree: Tree): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    let entries;
    try {
      entries = tree.list(rel);
    } catch (err) {
      // Swapped for a symlink or removed since it was listed (a running container): nothing below it.
      if (rel !== "" && isGone(err)) return;
      throw err;
    }
    for (const e of entries) {
      const child = rel === "" ? e.name : `${rel}/${e.name}`;
      out.push(child);
      if (out.length % YIELD_EVERY === 0) await yieldToLoop();
      const st = e.type === DT.UNKNOWN ? tree.stat(child) : null;
      if (e.type === DT.DIR || (st !== null && isDirMode(st.mode))) await walk(child);
    }
  };
  await walk("");
  return out.sort((a, b) => comparePaths(`/${a}`, `/${b}`));
}

/**
 * Stream the upper dir `upper` as a layer tar with AUFS whiteouts, produced as it is read.
 * @example
 * const tar = exportUpper("/var/lib/docker/strata/abc/diff", { sys });
 * await new Response(tar).arrayBuffer();
 */
export function exportUpper(upper: string, opts: ExportUpperOptions): ReadableStream<Uint8Array> {
  const writer = new TarWriter();
  withTree(opts.sys, upper, (tree) => _exportTree(new EntryWriter(writer, tree, { ...opts, dropXattr: isOverlayXattr }), tree, opts.sys))
    .then(() => writer.finish())
    .catch((err) => writer.abort(err));
  return writer.stream;
}

async function _exportTree(entries: EntryWriter, tree: Tree, sys: Sys): Promise<void> {
  for (const rel of await _paths(tree)) {
    const st = entries.stat(rel);
    if (st === null) continue;
    if (isOverlayWhiteout(st)) {
      await entries.marker(whiteoutName(rel));
      continue;
    }
    const header = await entries.write(rel, st);
    if (header?.type !== "directory") continue;
    let opaque: Uint8Array | null;
    try {
      opaque = sys.lgetxattr(tree.at(rel), OVERLAY_OPAQUE_XATTR);
    } catch (err) {
      // Removed since it was written (a running container): nothing hides below it any more.
      if (!isGone(err)) throw err;
      opaque = null;
    }
    // As moby writes it: the directory's permissions and owner, no time.
    if (opaque !== null && opaque.length === 1 && opaque[0] === 0x79) {
      await entries.marker(`${rel}/${WHITEOUT_OPAQUE}`, header.mode & 0o777, header.uid, header.gid);
    }
  }
}
