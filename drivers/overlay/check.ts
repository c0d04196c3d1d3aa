/**
 * The overlay store check (`strata check`): layer directories against their link, lower and diff
 * entries, `.l/` links that dangle or are missing, parents that are missing, what a crash left in
 * `.tmp/`, size-limited layers' images (each one not mounted is test-mounted read-only in a temp
 * dir outside Home), and mounts left under Home. Repairs are the ones the driver's start-up makes
 * (drop dangling links, restore missing ones, empty `.tmp/`, unmount what no layer owns), never
 * the deletion of a layer directory that holds anything.
 */
import { lstatSync, readFileSync, readlinkSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { type CheckContext, type Finding, finding } from "../../src/check/types.ts";
import { hasCode } from "../../src/core/errors.ts";
import { LAYER_ID_PATTERN } from "../../src/core/layer-id.ts";
import { unmount } from "../../src/mount/mounter.ts";
import { mountsUnder } from "../../src/mount/mountinfo.ts";
import { removeBeneath } from "../../src/store/remove-tree.ts";
import { MS, type Sys } from "../../src/sys/types.ts";
import { TMP_PREFIX } from "./layers.ts";
import {
  DIFF_DIR, IMAGE_SUFFIX, LINK_DIR, LINK_FILE, LOWER_FILE, MERGED_DIR, QUOTA_DIR, TMP_DIR, idOfLinkTarget, isLinkId, linkTarget, parseLower,
} from "./layout.ts";
import { MARKER_FILE } from "../../src/store/home.ts";

type _Kind = "dir" | "file" | "symlink" | "other" | "missing";

function _kind(p: string): _Kind {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (st === undefined) return "missing";
  return st.isDirectory() ? "dir" : st.isFile() ? "file" : st.isSymbolicLink() ? "symlink" : "other";
}

const _names = (dir: string) => fs.readdir(dir).catch(() => [] as string[]);

/** Raised when this process may not attach loop devices or mount: the image was not tried. */
class _CannotTry extends Error {}

/** Whether the image `file` mounts, and holds a layer (its `link` file): tried read-only, without journal replay, outside Home. */
async function _imageMounts(sys: Sys, file: string): Promise<string | null> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "strata-check-image-"));
  try {
    const loop = sys.loopAttach(file);
    try {
      sys.mount(loop.device, dir, "ext4", MS.RDONLY, "noload");
    } finally {
      sys.close(loop.fd);
    }
    try {
      return _kind(path.join(dir, LINK_FILE)) === "file" ? null : "it mounts but holds no layer (no link file)";
    } finally {
      unmount(sys, dir);
    }
  } catch (err) {
    if (hasCode(err, "EPERM", "EACCES")) throw new _CannotTry((err as Error).message);
    return (err as Error).message;
  } finally {
    await fs.rmdir(dir).catch(() => {});
  }
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

  for (const dir of [linkDir, tmpDir]) {
    const kind = _kind(dir);
    if (kind === "missing") {
      out.push(finding("problem", "missing-store-dir", dir, `the store's ${path.basename(dir)}/ directory is missing`, async () => {
        await fs.mkdir(dir, { mode: 0o700 });
        return "made it (empty, mode 0700)";
      }));
    } else if (kind !== "dir") {
      out.push(finding("problem", "foreign-entry", dir, `it is a ${kind} where the store keeps its ${path.basename(dir)}/ directory`));
    }
  }

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
      if (!(err instanceof _CannotTry)) throw err;
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
      const entries = await _names(p);
      if (entries.length === 0) {
        out.push(finding("problem", "empty-layer-dir", p, "an empty directory where no layer is (a removal or create was cut short)", async () => {
          await fs.rmdir(p);
          return "removed the empty directory";
        }));
      } else {
        out.push(finding("problem", "incomplete-layer", p, `a layer directory without its link file (holds ${entries.sort().join(", ")}): left alone`));
      }
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
    const nestedTmp = path.join(p, TMP_DIR);
    for (const t of await _names(nestedTmp)) {
      out.push(finding("problem", "temp-entry", path.join(nestedTmp, t), "a half-made entry a crash left in the layer's own temp dir", async () => {
        await removeBeneath(sys, nestedTmp, t);
        return "removed it";
      }));
    }
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
  for (const name of await _names(tmpDir)) {
    const p = path.join(tmpDir, name);
    if (!prefixes.some((pre) => name.startsWith(pre))) {
      out.push(finding("problem", "foreign-entry", p, "an entry of .tmp/ strata did not name: left alone"));
      continue;
    }
    const inside = mountsUnder(ctx.mounts, real(TMP_DIR, name)).map((m) => m.mountPoint);
    if (mountPoints.has(real(TMP_DIR, name))) inside.push(real(TMP_DIR, name));
    out.push(finding("problem", "temp-entry", p, `a half-made or half-removed entry a crash left in .tmp/${inside.length ? " (mounted)" : ""}`, async () => {
      for (const m of inside) unmount(sys, m);
      await removeBeneath(sys, tmpDir, name);
      return inside.length ? `unmounted ${inside.length} mount${inside.length === 1 ? "" : "s"} and removed it` : "removed it";
    }));
  }

  // Mounts under Home: a layer's merged/ (a container may still run on it) and images on <id>/ are expected.
  for (const m of mountsUnder(ctx.mounts, ctx.realHome)) {
    const [first, second, ...rest] = path.relative(ctx.realHome, m.mountPoint).split(path.sep);
    // Mounts inside strata's own temp entries go with them (temp-entry above); any other is reported below.
    if (first === TMP_DIR && second !== undefined && prefixes.some((pre) => second.startsWith(pre))) continue;
    if (second === undefined && images.has(first)) continue;
    if (second === MERGED_DIR && rest.length === 0 && LAYER_ID_PATTERN.test(first)) {
      if (exists(first)) {
        out.push(finding("note", "layer-mounted", m.mountPoint, `layer "${first}" is mounted (a container may be running on it; strata adopts the mount at its next start)`));
        continue;
      }
      out.push(finding("problem", "stale-mount", m.mountPoint, `a mount left behind on a directory that holds no layer`, async () => {
        const how = unmount(sys, m.mountPoint);
        return how === "detached" ? "detached it (it was busy)" : "unmounted it";
      }));
      continue;
    }
    out.push(finding("problem", "foreign-mount", m.mountPoint, `a ${m.fsType} mount of "${m.source}" that no layer owns: left alone`));
  }
  return out;
}
