/**
 * What a layer's root is made of, and its mount as data: the layer's own part (a read-write
 * layer's upper dir, an image layer's image) over its parents' parts, nearest first. Image layers
 * that were never applied contribute nothing. Pure: nothing here touches the disk.
 */
import type { MountSpec } from "../../src/mount/spec.ts";

/** One lower part of a view: an image (mounted at `dir` while the view is) or a plain directory. */
export type Part = { image: string; dir: string } | { image: null; dir: string };

/** The layer's view: how Get answers. */
export type ViewPlan =
  /** A read-write base layer: its upper dir as it is. */
  | { kind: "dir"; dir: string; parts: Part[] }
  /** One read-only part: that part's directory (an image mount is read-only by itself). */
  | { kind: "single"; dir: string; parts: Part[] }
  /** An image layer with nothing below or in it: an empty directory. */
  | { kind: "empty"; parts: Part[] }
  /** An overlay: read-only of the parts, or with the layer's upper and work dirs. */
  | { kind: "overlay"; spec: MountSpec; parts: Part[] };

/** The layer a view is planned for. */
export interface ViewInput {
  /** Upper and work dirs of a read-write layer; null for an image layer. */
  rw: { diff: string; work: string } | null;
  /** Lower parts, nearest first (for an image layer, its own image first when it has one). */
  parts: Part[];
  /** Options that go first ("userxattr"). */
  extra?: readonly string[];
}

/**
 * Plan the view of a layer.
 * @example
 * planView({ rw: { diff: "/h/c/diff", work: "/h/c/work" }, parts: [{ image: "base", dir: "/h/base/image" }] });
 * // { kind: "overlay", spec: { type: "overlay", source: "overlay",
 * //   options: ["lowerdir+=/h/base/image", "upperdir=/h/c/diff", "workdir=/h/c/work"] }, … }
 */
export function planView(input: ViewInput): ViewPlan {
  const { rw, parts } = input;
  if (rw && parts.length === 0) return { kind: "dir", dir: rw.diff, parts };
  if (!rw && parts.length === 0) return { kind: "empty", parts };
  // overlayfs needs two lower layers to mount without an upper one.
  if (!rw && parts.length === 1) return { kind: "single", dir: parts[0].dir, parts };
  const options = [...(input.extra ?? []), ...parts.map((p) => `lowerdir+=${p.dir}`)];
  if (rw) options.push(`upperdir=${rw.diff}`, `workdir=${rw.work}`);
  return { kind: "overlay", spec: { type: "overlay", source: "overlay", options }, parts };
}

/** The same view as one mount(2)-style spec for another process (the snapshotter): `lowerdir=` joined. */
export function flatSpec(plan: ViewPlan, readonly: boolean): MountSpec {
  if (plan.kind === "dir") return { type: "bind", source: plan.dir, options: ["rbind", readonly ? "ro" : "rw"] };
  if (plan.kind === "single") return { type: "bind", source: plan.dir, options: ["rbind", "ro"] };
  if (plan.kind === "empty") throw new Error("An empty view has no mount");
  const lowers = plan.spec.options.filter((o) => o.startsWith("lowerdir+=")).map((o) => o.slice("lowerdir+=".length));
  const rest = plan.spec.options.filter((o) => !o.startsWith("lowerdir+="));
  return { type: "overlay", source: "overlay", options: [`lowerdir=${lowers.join(":")}`, ...rest] };
}
