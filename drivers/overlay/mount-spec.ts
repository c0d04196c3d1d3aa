/**
 * Overlay mounts as plain data (`{type, source, options}`, containerd-style), built by pure
 * functions from a layer's lower chain; `mounter.ts` performs them.
 *
 * Two ways to hand the options to the kernel:
 * - "fsconfig": the new mount API, one `fsconfig` call per option, lower layers passed one at a
 *   time as `lowerdir+=PATH` (Linux 6.8). No length limit; overlay itself stops at 500 lowers.
 * - "mount": one mount(2) call whose data must fit a page. Absolute paths when they fit, else
 *   overlay2's scheme: `.l/<LINK>` names relative to Home, with the mount done from Home.
 */
import * as path from "node:path";
import { StrataError } from "../../src/core/errors.ts";
import { DIFF_DIR, WORK_DIR } from "./layout.ts";
import type { MountSpec } from "../../src/mount/spec.ts";

export { type MountSpec, mountData, needsFsconfig, splitOption } from "../../src/mount/spec.ts";

/** How an overlay is mounted. */
export type MountMethod = "fsconfig" | "mount";

/** overlayfs's OVL_MAX_STACK: the most lower layers one overlay mount takes. */
export const OVERLAY_MAX_LOWERS = 500;
/** The longest string value fsconfig(2) takes: the kernel copies at most 256 bytes, NUL included. */
export const FSCONFIG_VALUE_MAX = 255;
/** overlay2's maxDepth: the most lower layers the mount(2) short-link scheme is sized for. */
export const MOUNT2_MAX_LOWERS = 128;

/** What an overlay mount of one layer is made of. */
export interface LayerMountInput {
  /** Home; lower entries are relative to it. */
  home: string;
  id: string;
  /** The layer's lower chain (".l/LINK" entries, nearest first); never empty. */
  lowers: readonly string[];
  /** Mount without upper: the layer's own diff on top of its lowers (overlay2 does this once a layer has children). */
  readonly: boolean;
  method: MountMethod;
  /** Options that go first, e.g. "index=off", "userxattr". */
  extra?: readonly string[];
  /** mount(2) takes at most pageSize - 1 bytes of data. */
  pageSize: number;
}

/** The deepest lower chain `method` can mount. */
export function maxLowers(method: MountMethod): number {
  return method === "fsconfig" ? OVERLAY_MAX_LOWERS : MOUNT2_MAX_LOWERS;
}

/**
 * The mount of one layer.
 * @example
 * layerMount({ home: "/h", id: "c", lowers: [".l/AAAA"], readonly: false, method: "fsconfig", pageSize: 4096 });
 * // { type: "overlay", source: "overlay",
 * //   options: ["lowerdir+=/h/.l/AAAA", "upperdir=/h/c/diff", "workdir=/h/c/work"] }
 */
export function layerMount(input: LayerMountInput): MountSpec & { type: "overlay" } {
  const { home, id, lowers, readonly, method } = input;
  const extra = [...(input.extra ?? [])];
  if (lowers.length === 0) throw new StrataError(`Cannot mount layer "${id}": it has no lower layers`);
  const total = lowers.length + (readonly ? 1 : 0);
  if (total > maxLowers(method)) {
    throw new StrataError(
      `Cannot mount layer "${id}": its ${total} lower layers exceed the limit of ${maxLowers(method)}` +
        (method === "mount" ? " for mount(2) (Linux 6.8's lowerdir+ lifts it to 500)" : " of overlayfs"),
    );
  }
  const diff = (base: string) => path.join(base, id, DIFF_DIR);
  const work = (base: string) => path.join(base, id, WORK_DIR);

  if (method === "fsconfig") {
    const fsconfigOptions = (layer: string, lower: (entry: string) => string): string[] => {
      const lowerDirs = [...(readonly ? [path.join(layer, DIFF_DIR)] : []), ...lowers.map(lower)];
      const options = [...extra, ...lowerDirs.map((d) => `lowerdir+=${d}`)];
      if (!readonly) options.push(`upperdir=${path.join(layer, DIFF_DIR)}`, `workdir=${path.join(layer, WORK_DIR)}`);
      return options;
    };
    const options = fsconfigOptions(path.join(home, id), (l) => path.join(home, l));
    if (options.every((o) => new TextEncoder().encode(o).byteLength - o.indexOf("=") - 1 <= FSCONFIG_VALUE_MAX)) {
      return { type: "overlay", source: "overlay", options };
    }
    // A long Home or layer ID: paths relative to the layer's own directory are short whatever its ID.
    return { type: "overlay", source: "overlay", options: fsconfigOptions("", (l) => path.join("..", l)), cwd: path.join(home, id) };
  }

  const build = (base: string, lowerList: string[]): string[] => {
    const options = [...extra, `lowerdir=${[...(readonly ? [diff(base)] : []), ...lowerList].join(":")}`];
    if (!readonly) options.push(`upperdir=${diff(base)}`, `workdir=${work(base)}`);
    return options;
  };
  const limit = input.pageSize - 1;
  // mount(2) data splits on "," and lowerdir on ":"; a Home holding either only works relatively.
  if (!/[,:\\]/.test(home)) {
    const absolute = build(home, lowers.map((l) => path.join(home, l)));
    if (absolute.join(",").length <= limit) return { type: "overlay", source: "overlay", options: absolute };
  }
  const relative = build("", [...lowers]);
  const size = relative.join(",").length;
  if (size > limit) {
    throw new StrataError(`Cannot mount layer "${id}": its mount options take ${size} bytes, more than mount(2) accepts (${limit})`);
  }
  return { type: "overlay", source: "overlay", options: relative, cwd: home };
}
