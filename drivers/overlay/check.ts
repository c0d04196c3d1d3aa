/**
 * The overlay store check (`strata check`): layer directories against their link, lower and diff
 * entries, `.l/` links that dangle or are missing, parents that are missing, what a crash left in
 * `.tmp/`, size-limited layers' images (each one not mounted is test-mounted read-only in a temp
 * dir outside Home), and mounts left under Home. Repairs are the ones the driver's start-up makes
 * (drop dangling links, restore missing ones, empty `.tmp/`, unmount what no layer owns), never
 * the deletion of a layer directory that holds anything.
 */
import { readFileSync, readlinkSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import {
  entryKind as _kind, entryNames as _names, foreignMount, insideTempEntry, scanTempDir, staleMount, storeDirFindings, strayLayerDir,
} from "../../src/check/scan.ts";
import { CannotTryMount, testMount } from "../../src/check/test-mount.ts";
import { type CheckContext, type Finding, finding } from "../../src/check/types.ts";
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import { mountsUnder } from "../../src/mount/mountinfo.ts";
import { MS, type Sys } from "../../src/sys/types.ts";
import { TMP_PREFIX } from "./layers.ts";
import {
  DIFF_DIR, IMAGE_SUFFIX, LINK_DIR, LINK_FILE, LOWER_FILE, MERGED_DIR, QUOTA_DIR, TMP_DIR, idOfLinkTarget, isLinkId, linkTarget, parseLower,
} from "./layout.ts";
import { MARKER_FILE } from "../../src/store/home.ts";

/** Whether the image `file` mounts, and holds a layer (its `link` file): tried read-only, without journal replay, outside Home. */
function _imageMounts(sys: Sys, file: string): Promise<string | null> {
  return testMount(sys, (dir) => {
    const loop = sys.loopAttach(file);
    try {
      sys.mount(loop.device, dir, "ext4", MS.RDONLY, "noload");
    } finally {
      sys.close(loop.fd);
    }
  }, (dir) => (_kind(path.join(dir, LINK_FILE)) === "file" ? null : "it mounts but holds no layer (no link file)"));
}

/** The layers of an overlay Home: directories with their link file, and size-limited layers by their image. */
export async function overlayLayerIds(home: string): Promise<Array<{ id: string; path: string }>> {
  const ids = new Set<string>();
  for (const name of await _names(home)) {
    if (LAYER_ID_PATTERN.test(name) && _kind(path.join(home, name)) === "dir" && _kind(path.join(home, name, LINK_FILE)) === "file") ids.add(name);
  }
  for (const name of await _names(path.join(home, QUOTA_DIR))) {
    const id = name.endsWith(IMAGE_SUFFIX) ? name.slice(0, -IMAGE_SUFFIX.length) : "";
    if (LAYER_ID_PATTERN.test(id) && _kind(path.join(home, QUOTA_DIR, name)) === "file") ids.add(id);
  }
  return [...ids].map((id) => ({ id, path: path.join(home, id) }));
}

/**
 * Check an overlay Home; nothing is written (repairs are returned, not run) apart from the
 * read-only test mounts of images, made and undone outside Home.
 * @example
 * const findings = await checkOverlayStore({ home, realHome: home, sys, mounts: await readMountInfo() });
 */
export async function checkOverlayStore(ctx: CheckContext): Promise<Finding[]> {
  const { home, sys } = ctx;
  const out: Finding[] = [];
  const linkDir = path.join(home, LINK_DIR);
  const tmpDir = path.join(home, TMP_DIR);
  const quotaDir = path.join(home, QUOTA_DIR);
  const mountPoints = new Set(ctx.mounts.map((m) => m.mountPoint));
  const real = (...parts: string[]) => path.join(ctx.realHome, ...parts);

  out.push(...storeDirFindings([linkDir, tmpDir]));

  // Size-limited layers: their files (link, lower, diff) are inside the image, seen only while it is mounted on <id>/.
  const images = new Set<string>();
  for (const name of await _names(quotaDir)) {
    const p = path.join(quotaDir, name);
    const id = name.endsWith(IMAGE_SUFFIX) ? name.slice(0, -IMAGE_SUFFIX.length) : "";
    if (!LAYER_ID_PATTERN.test(id) || _kind(p) !== "file") {
      out.push(finding("problem", "foreign-entry", p, "an entry of .quota/ that is no layer image: left alone"));
      continue;
    }
    images.add(id);
    if (mountPoints.has(real(id))) continue;
    let problem: string | null;
    try {
      problem = await _imageMounts(sys, p);
    } catch (err) {
      if (!(err instanceof CannotTryMount)) throw err;
      out.push(finding("note", "image-not-tried", p, `layer "${id}"'s image is not mounted and could not be test-mounted here (${err.message}): run check as root`));
      continue;
    }
    if (problem === null) {
      out.push(finding("note", "image-not-mounted", p, `layer "${id}"'s image is sound but not mounted: strata mounts it at its next start`));
    } else {
      out.push(finding("problem", "image-does-not-mount", p, `layer "${id}"'s image does not mount (${problem}): the layer's files are in it, left alone`));
    }
  }

  // Layers, and the link name each one's link file gives (unreadable for an unmounted image).
  const layers = new Map<string, string | null>();
  for (const name of await _names(home)) {
    if (name === LINK_DIR || name === TMP_DIR || name === QUOTA_DIR || name === MARKER_FILE || name === "lost+found") continue;
    const p = path.join(home, name);
    const kind = _kind(p);
    if (!LAYER_ID_PATTERN.test(name) || kind !== "dir") {
      out.push(finding("problem", "foreign-entry", p, `a ${kind} in Home that is no layer: left alone`));
      continue;
    }
    const linkFile = path.join(p, LINK_FILE);
    if (_kind(linkFile) !== "file") {
      if (images.has(name)) {
        layers.set(name, null);
        continue;
      }
      out.push(await strayLayerDir(p, "link file"));
      continue;
    }
    const linkId = readFileSync(linkFile, "utf8").trim();
    if (!isLinkId(linkId)) {
      out.push(finding("problem", "corrupt-link-file", linkFile, "the layer's link file holds no link name: its children cannot name it"));
      layers.set(name, null);
    } else {
      layers.set(name, linkId);
    }
    if (_kind(path.join(p, DIFF_DIR)) !== "dir") out.push(finding("problem", "missing-diff", path.join(p, DIFF_DIR), "the layer has no diff/ directory: its files are gone"));
    out.push(...(await scanTempDir(ctx, { dir: path.join(p, TMP_DIR), where: "the layer's own temp dir" })));
  }
  const owners = new Map<string, string>();
  for (const [id, linkId] of layers) if (linkId !== null) owners.set(linkId, id);
  const exists = (id: string) => layers.has(id) || images.has(id);

  // .l/: every link of ours names a layer that exists and names it back; every layer has its link.
  const seen = new Set<string>();
  for (const name of await _names(linkDir)) {
    const p = path.join(linkDir, name);
    if (!isLinkId(name) || _kind(p) !== "symlink") {
      out.push(finding("problem", "foreign-entry", p, "an entry of .l/ that is no link of ours: left alone"));
      continue;
    }
    const target = readlinkSync(p);
    const id = idOfLinkTarget(target);
    const unlink = async () => {
      await fs.unlink(p);
      return "removed the link";
    };
    if (id === null) {
      out.push(finding("problem", "dangling-link", p, `it points to "${target}", which is no layer's diff`, unlink));
    } else if (!exists(id)) {
      out.push(finding("problem", "dangling-link", p, `it points to layer "${id}", which does not exist`, unlink));
    } else if (layers.get(id) !== null && layers.get(id) !== name) {
      out.push(finding("problem", "stale-link", p, `it points to layer "${id}", whose link is ${layers.get(id)}`, unlink));
    } else {
      seen.add(name);
    }
  }
  for (const [linkId, id] of owners) {
    if (seen.has(linkId)) continue;
    const p = path.join(linkDir, linkId);
    if (_kind(p) !== "missing") continue;
    out.push(finding("problem", "missing-link", p, `layer "${id}"'s link is missing: its children cannot mount`, async () => {
      await fs.symlink(linkTarget(id), p);
      return `made it again (-> ${linkTarget(id)})`;
    }));
  }

  // Lower chains: every entry must name a link a layer owns; the first is the parent.
  for (const id of layers.keys()) {
    const lowerFile = path.join(home, id, LOWER_FILE);
    if (_kind(lowerFile) !== "file") continue;
    let chain: string[];
    try {
      chain = parseLower(readFileSync(lowerFile, "utf8"));
    } catch (err) {
      out.push(finding("problem", "corrupt-lower", lowerFile, `${(err as Error).message}: the layer cannot be mounted`));
      continue;
    }
    chain.forEach((entry, i) => {
      const linkId = entry.slice(LINK_DIR.length + 1);
      if (owners.has(linkId)) return;
      // The link may dangle because its layer is an image not mounted (its link file unreadable): not a problem.
      const target = _kind(path.join(home, entry)) === "symlink" ? idOfLinkTarget(readlinkSync(path.join(home, entry))) : null;
      if (target !== null && images.has(target)) return;
      out.push(finding("problem", i === 0 ? "missing-parent" : "missing-lower", path.join(home, id),
        `${i === 0 ? "its parent" : `lower ${i + 1} of its chain`} (${entry}) is no layer: the layer cannot be mounted`));
    });
  }

  // .tmp/: every entry is a create, apply, removal or probe a crash cut short.
  const prefixes = Object.values(TMP_PREFIX) as string[];
  out.push(...(await scanTempDir(ctx, { dir: tmpDir, where: ".tmp/", prefixes, unmountInside: true })));

  // Mounts under Home: a layer's merged/ (a container may still run on it) and images on <id>/ are expected.
  for (const m of mountsUnder(ctx.mounts, ctx.realHome)) {
    const rel = path.relative(ctx.realHome, m.mountPoint).split(path.sep);
    const [first, second, ...rest] = rel;
    // Mounts inside strata's own temp entries go with them (temp-entry above); any other is reported below.
    if (insideTempEntry(rel, TMP_DIR, prefixes)) continue;
    if (second === undefined && images.has(first)) continue;
    if (second === MERGED_DIR && rest.length === 0 && LAYER_ID_PATTERN.test(first)) {
      if (exists(first)) {
        out.push(finding("note", "layer-mounted", m.mountPoint, `layer "${first}" is mounted (a container may be running on it; strata adopts the mount at its next start)`));
      } else {
        out.push(staleMount(sys, m, "a mount left behind on a directory that holds no layer"));
      }
      continue;
    }
    out.push(foreignMount(m, "that no layer owns"));
  }
  return out;
}
