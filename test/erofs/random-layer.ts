/** Seeded random layers for the EROFS round-trip tests and benchmarks. */
import type { TarHeader } from "../../src/archive/tar-types.ts";
import { entry } from "../helpers/layer-tar.ts";
import { CAPABILITY, type Item } from "../archive/layer-fixtures.ts";

/** mulberry32: a small, fast, seedable PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random layer: a model of the tree keeps every entry legal (nothing under a non-directory). */
export function randomLayer(seed: number): Item[] {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: T[]): T => xs[int(xs.length)];
  const model = new Map<string, TarHeader["type"]>([["", "directory"]]);
  const items: Item[] = [];
  const shared = { sec: 1_700_000_000, nsec: 0 };
  const meta = (type: TarHeader["type"]): Partial<TarHeader> => {
    const xattrs = new Map<string, Uint8Array>();
    const xn = r() < 0.3 ? int(4) : 0;
    for (let i = 0; i < xn; i++) {
      const ns = type === "file" || type === "directory" ? pick(["user", "trusted"]) : "trusted";
      xattrs.set(`${ns}.k${int(8)}`, Uint8Array.from({ length: pick([0, 1, 17, 200]) }, () => int(256)));
    }
    if (type === "file" && r() < 0.05) xattrs.set("security.capability", CAPABILITY);
    return {
      mode: int(0o10000),
      uid: r() < 0.8 ? int(1_000) : int(5_000_000),
      gid: r() < 0.8 ? int(1_000) : int(5_000_000),
      mtime: r() < 0.5 ? shared : { sec: int(4_000_000_000) - 100_000_000, nsec: r() < 0.5 ? 0 : int(1e9) },
      xattrs,
    };
  };
  const dirs = () => [...model].filter(([, t]) => t === "directory").map(([p]) => p);
  const nonDirs = () => [...model].filter(([, t]) => t !== "directory" && t !== "link").map(([p]) => p);
  const drop = (p: string) => {
    for (const k of [...model.keys()]) if (k === p || k.startsWith(`${p}/`)) model.delete(k);
  };
  const fresh = () => {
    const dir = pick(dirs());
    const name = pick(["a", "b", "c", "-", "Z", "é", "long-".repeat(1 + int(40)), `n${int(100)}`, ".x"]);
    return dir === "" ? name : `${dir}/${name}`;
  };
  const sizes = [0, 1, 7, 100, 4_000, 4_095, 4_096, 4_097, 8_191, 8_192, 12_000, 40_000];
  const count = 20 + int(120);
  for (let i = 0; i < count; i++) {
    const roll = r();
    // Sometimes replace something that exists, else make a new name.
    const existing = [...model.keys()].filter((p) => p !== "");
    const p = roll < 0.15 && existing.length ? pick(existing) : fresh();
    const parentIsDir = model.get(p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : "") === "directory";
    if (!parentIsDir) continue;
    const kind = r();
    if (kind < 0.25) {
      const wasDir = model.get(p) === "directory";
      if (!wasDir) drop(p);
      model.set(p, "directory");
      items.push(entry({ name: `${p}/`, type: "directory", ...meta("directory") }));
    } else if (kind < 0.6) {
      const size = r() < 0.7 ? pick(sizes) : int(70_000);
      drop(p);
      model.set(p, "file");
      items.push([entry({ name: p, type: "file", size, ...meta("file") }), Uint8Array.from({ length: size }, () => int(256))]);
    } else if (kind < 0.7) {
      drop(p);
      model.set(p, "symlink");
      items.push(entry({ name: p, type: "symlink", linkname: pick(["a", "../../x", "/etc/passwd", "t".repeat(1 + int(4_000))]), ...meta("symlink") }));
    } else if (kind < 0.8) {
      const targets = nonDirs().filter((t) => t !== p && !t.startsWith(`${p}/`));
      if (!targets.length) continue;
      const target = pick(targets);
      drop(p);
      model.set(p, model.get(target)!);
      items.push(entry({ name: p, type: "link", linkname: target }));
    } else if (kind < 0.87) {
      const type = pick(["char", "block", "fifo"] as const);
      drop(p);
      model.set(p, type);
      items.push(entry({ name: p, type, devmajor: int(300), devminor: int(70_000), ...meta(type) }));
    } else if (kind < 0.95) {
      // A whiteout of whatever is at p.
      const slash = p.lastIndexOf("/");
      drop(p);
      model.set(p, "char");
      items.push(entry({ name: `${p.slice(0, slash + 1)}.wh.${p.slice(slash + 1)}`, uid: int(10), gid: int(10) }));
    } else {
      const dir = pick(dirs());
      items.push(entry({ name: dir === "" ? ".wh..wh..opq" : `${dir}/.wh..wh..opq` }));
    }
  }
  return items;
}

