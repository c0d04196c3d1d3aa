/**
 * The erofs store check (`strata check`): each layer directory (`parent` names a layer that
 * exists), image layers (`layer.erofs` missing, truncated or corrupt by its superblock, read with
 * strata's own EROFS format code; an image not mounted is also test-mounted read-only outside
 * Home; `layer.tar` missing where the size file says the layer was applied from one; a tar shorter
 * than its size), applies and seals a crash cut short, container layers (an upper and a work dir,
 * as overlay's), `.l/` short links that dangle or are stale, `.tmp/` entries, and mounts left
 * under Home (a container's view whose images are mounted is a note: strata adopts it).
 *
 * Repairs are what start-up recovery makes: seal a layer whose image is in place (only when the
 * image is sound: start-up would seal it anyway, so a broken one is reported loudly), drop an
 * ApplyDiff's tar and size when its image never arrived, empty `.tmp/` (mounts inside unmounted
 * first), unmount views and images no adopted view uses, drop dangling and stale links (they are
 * made again on demand). Besides, as overlay's check: remove an empty directory named like a layer
 * (it holds nothing; a Create renames over it). An image, a tar, an upper dir is never deleted.
 */
import { readFileSync, readlinkSync, statSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import {
  type EntryKind, entryKind, entryNames, foreignMount, insideTempEntry, scanTempDir, staleMount, storeDirFindings, strayLayerDir,
} from "../../src/check/scan.ts";
import { CannotTryMount, testMount } from "../../src/check/test-mount.ts";
import { type CheckContext, type Finding, finding } from "../../src/check/types.ts";
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import { verifyImage } from "../../src/erofs/verify.ts";
import { mountsUnder } from "../../src/mount/mountinfo.ts";
import { MARKER_FILE } from "../../src/store/home.ts";
import { Staging } from "../../src/store/staging.ts";
import { silentLogger } from "../../src/core/log.ts";
import { type ImageMode, mountImage, probeImageMode } from "./image-mounts.ts";
import {
  DIFF_DIR, IMAGE_DIR, IMAGE_FILE, Layout, LINK_DIR, MERGED_DIR, PARENT_FILE, PENDING_FILE, RW_FILE, SIZE_FILE, STAGING, TAR_FILE, TMP_DIR, WORK_DIR,
} from "./layout.ts";
import { APPLY_LEFTOVERS, UPPER_ENTRIES, dropApplyLeftovers, sealAsImage } from "./seal.ts";
import { shortName } from "./short-links.ts";

/** What one layer directory holds. */
interface _Layer {
  parent: string;
  image: EntryKind;
  /** Whether its image passed the checks (or is mounted). */
  sound: boolean;
  /** An upper dir: no image, and the rw or pending marker. */
  upper: boolean;
  /** A read-write (container) layer: no image, and the rw marker. */
  rw: boolean;
}

/** A tar is made of 512-byte blocks. */
const TAR_BLOCK = 512;
/** A short link's name: 26 base32 characters (`shortName`). */
const SHORT_NAME = /^[A-Z2-7]{26}$/;
/** A short link's target: `../<id>/<leaf>`. */
const SHORT_TARGET = /^\.\.\/([^/]+)\/([^/]+)$/;

/** The layers of an erofs Home: directories named like layer IDs with their parent file. */
export async function erofsLayerIds(home: string): Promise<Array<{ id: string; path: string }>> {
  return (await entryNames(home))
    .filter((n) => LAYER_ID_PATTERN.test(n) && entryKind(path.join(home, n)) === "dir" && entryKind(path.join(home, n, PARENT_FILE)) === "file")
    .map((id) => ({ id, path: path.join(home, id) }));
}

/**
 * Check an erofs Home; nothing is written (repairs are returned, not run) apart from the read-only
 * test mounts of images, made and undone outside Home.
 * @example
 * const findings = await checkErofsStore({ home, realHome: home, sys, mounts: await readMountInfo() });
 */
export async function checkErofsStore(ctx: CheckContext): Promise<Finding[]> {
  const { home, sys } = ctx;
  const layout = new Layout(home);
  // Repairs stage through .tmp/ with the driver's own names, as its seal does.
  const staging = new Staging(layout.tmpDir, sys, silentLogger);
  const out = storeDirFindings([layout.linkDir, layout.tmpDir]);
  const rel = (m: { mountPoint: string }) => path.relative(ctx.realHome, m.mountPoint).split(path.sep);
  const mountedImages = new Set<string>();
  for (const m of mountsUnder(ctx.mounts, ctx.realHome)) {
    const [id, leaf, ...rest] = rel(m);
    if (rest.length === 0 && leaf === IMAGE_DIR && m.fsType === "erofs") mountedImages.add(id);
  }

  let mode: ImageMode | null = null;
  const tryImage = (file: string) => testMount(sys, (dir) => {
    // The first image tells how this kernel mounts them (as Init's probe does); the rest follow.
    if (mode === null && (mode = probeImageMode(sys, file, dir)) === "file") mountImage(sys, file, dir, "file");
    else mountImage(sys, file, dir, mode!);
  });

  const layers = new Map<string, _Layer>();
  for (const name of await entryNames(home)) {
    if (name === LINK_DIR || name === TMP_DIR || name === MARKER_FILE || name === "lost+found") continue;
    const p = path.join(home, name);
    const kind = entryKind(p);
    if (!LAYER_ID_PATTERN.test(name) || kind !== "dir") {
      out.push(finding("problem", "foreign-entry", p, `a ${kind} in Home that is no layer: left alone`));
      continue;
    }
    if (entryKind(path.join(p, PARENT_FILE)) !== "file") {
      out.push(await strayLayerDir(p, "parent file"));
      continue;
    }
    const image = entryKind(layout.of(name, IMAGE_FILE));
    const rwMarker = entryKind(layout.of(name, RW_FILE)) === "file";
    const marked = rwMarker || entryKind(layout.of(name, PENDING_FILE)) === "file";
    layers.set(name, { parent: readFileSync(path.join(p, PARENT_FILE), "utf8").trim(), image, sound: false, upper: image === "missing" && marked, rw: image === "missing" && rwMarker });
  }

  for (const [id, l] of layers) {
    const dir = layout.layer(id);
    if (l.parent !== "" && !LAYER_ID_PATTERN.test(l.parent)) {
      out.push(finding("problem", "corrupt-parent", layout.of(id, PARENT_FILE), "the parent file names no layer ID: the layer's chain is unknown"));
    } else if (l.parent !== "" && !layers.has(l.parent)) {
      out.push(finding("problem", "missing-parent", dir, `its parent "${l.parent}" does not exist: the layer's view lacks its parent's files`));
    }
    const present = (names: readonly string[]) => names.filter((n) => entryKind(layout.of(id, n)) !== "missing");
    if (l.image === "file") {
      out.push(...(await _image(id, l, layout, mountedImages.has(id), tryImage)));
      const upper = present(UPPER_ENTRIES);
      if (upper.length > 0 && l.sound) {
        out.push(finding("problem", "unsealed-image", dir, `the layer's image is in place but its upper dir is still there (${upper.join(", ")}): a seal a crash cut short`, async () => {
          await sealAsImage(layout, staging, id, (aside) => staging.remove(aside));
          return "sealed it as start-up does (its image holds its files): removed the markers and upper dir";
        }));
      } else if (upper.length > 0) {
        out.push(finding("problem", "unsealed-image", dir, `the layer's image is in place but broken, and its upper dir is still there (${upper.join(", ")}): strata's next start removes the upper dir (the image wins); left alone, copy what you need first`));
      }
    } else if (l.image !== "missing") {
      out.push(finding("problem", "foreign-entry", layout.of(id, IMAGE_FILE), `a ${l.image} where the layer keeps its image: the driver refuses the layer; left alone`));
    } else {
      const leftovers = present(APPLY_LEFTOVERS);
      if (l.upper) {
        if (leftovers.length > 0) {
          out.push(finding("problem", "apply-leftover", dir, `${leftovers.join(" and ")} of an ApplyDiff a crash cut short before its image was placed: the apply did not happen`, async () => {
            await dropApplyLeftovers(layout, id);
            return `removed ${leftovers.join(" and ")}, as start-up does`;
          }));
        }
        // A container's layer, or an image layer not applied yet: overlay's upper and work dirs.
        if (entryKind(layout.of(id, DIFF_DIR)) !== "dir") out.push(finding("problem", "missing-diff", layout.of(id, DIFF_DIR), "the layer has no diff/ directory: its files are gone"));
        if (entryKind(layout.of(id, WORK_DIR)) !== "dir") out.push(finding("problem", "missing-work", layout.of(id, WORK_DIR), "the layer has no work/ directory: overlay cannot mount its view"));
      } else {
        // Sealed (no markers) yet without its image: the image went after the seal, and the kept tar may be all that is left.
        const tar = leftovers.includes(TAR_FILE)
          ? "; its layer.tar is left alone, and strata's next start deletes layer.tar (it takes it for an apply cut short): copy it first, re-applying it makes the layer again"
          : "";
        out.push(finding("problem", "missing-image", layout.of(id, IMAGE_FILE), `an image layer without its image: its files are gone, its view shows only its parents'${tar}`));
      }
    }
  }

  out.push(...(await _links(layout, layers)));
  const prefixes = Object.values(STAGING);
  out.push(...(await scanTempDir(ctx, { dir: layout.tmpDir, where: ".tmp/", prefixes, unmountInside: true })));

  // Mounts, as start-up takes them over: a container's view whose images are all mounted stays, with
  // those images, and so do the images under a read-write layer's whole chain; every other of ours goes.
  const keptImages = new Set<string>();
  const imageMounts = [];
  const chainImages = (id: string): string[] => {
    const images: string[] = [];
    for (let at = layers.get(id)?.parent ?? "", n = 0; at !== "" && n <= layers.size; at = layers.get(at)?.parent ?? "", n++) {
      if (layers.get(at)?.image === "file") images.push(at);
    }
    return images;
  };
  for (const m of mountsUnder(ctx.mounts, ctx.realHome)) {
    const parts = rel(m);
    if (insideTempEntry(parts, TMP_DIR, prefixes)) continue;
    const [id, leaf, ...rest] = parts;
    const ours = rest.length === 0 && (leaf === MERGED_DIR || leaf === IMAGE_DIR) && LAYER_ID_PATTERN.test(id);
    if (!ours) {
      out.push(foreignMount(m, "that no layer owns (strata's next start unmounts it)"));
      continue;
    }
    const gone = () => fs.rmdir(m.mountPoint).catch(() => {});
    if (!layers.has(id)) {
      out.push(staleMount(sys, m, "a mount left behind on a directory that holds no layer", gone));
    } else if (leaf === IMAGE_DIR) {
      imageMounts.push(m);
    } else {
      const images = chainImages(id);
      if (m.fsType === "overlay" && layers.get(id)!.upper && images.every((i) => mountedImages.has(i))) {
        for (const i of images) keptImages.add(i);
        out.push(finding("note", "layer-mounted", m.mountPoint, `layer "${id}" is mounted (a container may be running on it; strata adopts the mount at its next start)`));
      } else {
        out.push(staleMount(sys, m, `layer "${id}"'s view, which strata's next start unmounts (no container's view it can adopt)`, gone));
      }
    }
  }
  // A read-write layer whose whole chain is mounted had it handed out by Mounts (the snapshotter's
  // caller mounts the overlay itself, outside Home): start-up pins those images again.
  for (const [id, l] of layers) {
    const images = chainImages(id);
    if (l.rw && images.length > 0 && images.every((i) => mountedImages.has(i))) for (const i of images) keptImages.add(i);
  }
  for (const m of imageMounts) {
    const [id] = rel(m);
    if (keptImages.has(id) && m.fsType === "erofs") continue;
    out.push(staleMount(sys, m, `layer "${id}"'s image is mounted but no adopted view or read-write layer's chain uses it: strata's next start unmounts it`, () => fs.rmdir(m.mountPoint).catch(() => {})));
  }
  return out;
}

/** The findings about an image layer's image, tar and size; sets `l.sound`. */
async function _image(id: string, l: _Layer, layout: Layout, mounted: boolean, tryImage: (file: string) => Promise<string | null>): Promise<Finding[]> {
  const out: Finding[] = [];
  const file = layout.of(id, IMAGE_FILE);
  const fault = await verifyImage(file).catch((err) => ({ kind: "corrupt" as const, message: (err as Error).message }));
  const tar = layout.of(id, TAR_FILE);
  const keep = entryKind(tar) === "file" ? " (its layer.tar is kept: re-applying it makes the image again)" : "";
  // mount(2)'s error names the temp mount point, which says nothing: the errno does.
  const reason = (message: string) => message.replace(/^mount "[^"]*": /, "");
  if (fault !== null) {
    out.push(finding("problem", `${fault.kind}-image`, file, `layer "${id}"'s image does not mount (${fault.message}): left alone${keep}`));
  } else if (mounted) {
    l.sound = true;
  } else {
    try {
      const problem = await tryImage(file);
      if (problem !== null) out.push(finding("problem", "image-does-not-mount", file, `layer "${id}"'s image does not mount (the kernel says ${reason(problem)}): left alone${keep}`));
      l.sound = problem === null;
    } catch (err) {
      if (!(err instanceof CannotTryMount)) throw err;
      out.push(finding("note", "image-not-tried", file, `layer "${id}"'s image could not be test-mounted here (${err.message}): run check as root`));
      l.sound = true;
    }
  }
  const size = layout.of(id, SIZE_FILE);
  const tarKind = entryKind(tar);
  const sizeKind = entryKind(size);
  if (tarKind === "missing" && sizeKind === "file") {
    out.push(finding("problem", "missing-tar", tar, "the layer was applied from a tar (its size file says so) but layer.tar is gone: Diff falls back to a naive diff, whose digest is not the layer's"));
  } else if (tarKind === "file" && sizeKind === "file") {
    const text = readFileSync(size, "utf8").trim();
    const bytes = statSync(tar).size;
    if (!/^\d+$/.test(text)) out.push(finding("note", "corrupt-size", size, "the size file holds no number: DiffSize walks the image instead"));
    // The size is the content's bytes, not the tar's: a whole tar holds at least that, in 512-byte blocks.
    else if (bytes % TAR_BLOCK !== 0 || Number(text) > bytes) {
      out.push(finding("problem", "truncated-tar", tar, `layer.tar is ${bytes} bytes, ${bytes % TAR_BLOCK !== 0 ? "not whole 512-byte tar blocks" : `less than the ${text} bytes of content its ApplyDiff read`}: Diff returns a broken tar; left alone`));
    }
  } else if (tarKind === "file" && sizeKind === "missing") {
    out.push(finding("note", "missing-size", size, "the layer has its tar but no size file: DiffSize walks the image instead"));
  }
  return out;
}

/** `.l/`: each link of ours names `<id>/<leaf>` under its own name, for a layer that has that leaf. */
async function _links(layout: Layout, layers: ReadonlyMap<string, _Layer>): Promise<Finding[]> {
  const out: Finding[] = [];
  for (const name of await entryNames(layout.linkDir)) {
    const p = path.join(layout.linkDir, name);
    if (!SHORT_NAME.test(name) || entryKind(p) !== "symlink") {
      out.push(finding("problem", "foreign-entry", p, "an entry of .l/ that is no link of ours: left alone"));
      continue;
    }
    const target = readlinkSync(p);
    const unlink = async () => {
      await fs.unlink(p);
      return "removed the link (strata makes it again when a mount needs it)";
    };
    const [, id, leaf] = SHORT_TARGET.exec(target) ?? [];
    if (id === undefined || !LAYER_ID_PATTERN.test(id) || (leaf !== IMAGE_DIR && leaf !== DIFF_DIR)) {
      out.push(finding("problem", "dangling-link", p, `it points to "${target}", which is no layer's image or diff`, unlink));
    } else if (shortName(id, leaf) !== name) {
      out.push(finding("problem", "stale-link", p, `it points to ${id}/${leaf}, whose link is ${shortName(id, leaf)}`, unlink));
    } else if (!layers.has(id)) {
      out.push(finding("problem", "dangling-link", p, `it points to layer "${id}", which does not exist`, unlink));
    } else if (leaf === DIFF_DIR ? !layers.get(id)!.upper : layers.get(id)!.image !== "file") {
      out.push(finding("problem", "dangling-link", p, `it points to layer "${id}"'s ${leaf}, which it no longer has`, unlink));
    }
  }
  return out;
}
