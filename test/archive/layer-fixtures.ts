/**
 * Fixtures for the apply / changes / export / copy-tree tests: temp roots removed after each case,
 * a layer holding every entry type with awkward metadata, and tree helpers.
 */
import { afterEach } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { applyLayer, type ApplyOptions } from "../../src/archive/apply.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import { createSys } from "../../src/sys/bun.ts";
import type { Timespec } from "../../src/sys/types.ts";
import { entry, file, makeTar, streamOf } from "../helpers/layer-tar.ts";

/** libc for every archive test. */
export const sys = createSys();

/** True when running as root: devices, chown, trusted.* and security.* xattrs need it. */
export const isRoot = process.getuid?.() === 0;

/** A valid VFS_CAP_REVISION_2 value (cap_net_bind_service, effective): the kernel checks the layout. */
export const CAPABILITY = Uint8Array.from([1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
/** Every byte value, for an xattr that must survive as bytes. */
export const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

/** One tar member: a header, or a header with its content. */
export type Item = TarHeader | [TarHeader, Uint8Array];

let roots: string[] = [];

/**
 * Remove the temp roots after each test of the calling file. Each test file must call this
 * itself: this module is evaluated once per run, so a hook registered here would only serve
 * the first file that imported it.
 */
export function removeRootsAfterEach(): void {
  afterEach(() => {
    for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
    roots = [];
  });
}

/** A fresh temp directory, removed after the current test (see `removeRootsAfterEach`). */
export function tempRoot(prefix = "strata-archive-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  roots.push(dir);
  return dir;
}

/** A fresh empty directory `name` under a new temp root (mode 0755, so roots compare equal). */
export function emptyDir(name = "layer"): string {
  const dir = path.join(tempRoot(), name);
  fs.mkdirSync(dir, { mode: 0o755 });
  return dir;
}

/** Timespec shorthand. */
export const ts = (sec: number, nsec = 0): Timespec => ({ sec, nsec });

/** Bytes 0..n-1 of a fixed pattern. */
export function pattern(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + (i >> 8)) & 0xff;
  return out;
}

/** A layer with every entry type, special modes, owners, binary xattrs and nanosecond times. */
export function richLayer(opts: { symlinks?: boolean } = {}): Item[] {
  const items: Item[] = [
    entry({ name: "bin/", type: "directory", mode: 0o755, mtime: ts(1_500_000_001, 1) }),
    file("bin/tool", "#!/bin/sh\necho tool\n", { mode: 0o4755, mtime: ts(1_600_000_000, 123_456_789), xattrs: new Map([["security.capability", CAPABILITY]]) }),
    entry({ name: "bin/tool-link", type: "link", linkname: "bin/tool" }),
    file("bin/sgid", "sgid", { mode: 0o2711, gid: 42, mtime: ts(1_600_000_001, 5) }),
    entry({ name: "tmp/", type: "directory", mode: 0o1777, mtime: ts(1_500_000_002, 999_999_999) }),
    entry({ name: "dev/", type: "directory", mtime: ts(1_500_000_003, 3) }),
    entry({ name: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3, mtime: ts(1_500_000_004, 4) }),
    entry({ name: "dev/sda1", type: "block", mode: 0o660, gid: 6, devmajor: 8, devminor: 1 }),
    entry({ name: "dev/wide", type: "char", mode: 0o600, devmajor: 511, devminor: 65_537 }),
    entry({ name: "run/fifo", type: "fifo", mode: 0o620, uid: 7, mtime: ts(1_500_000_005, 55) }),
    entry({ name: "home/u/", type: "directory", mode: 0o2750, uid: 1234, gid: 5678, mtime: ts(1_500_000_006, 6) }),
    file("home/u/notes", "hello", { mode: 0o640, uid: 1234, gid: 5678, mtime: ts(1_700_000_000, 999_999_999) }),
    file("etc/conf", "a=1\n", { uid: 70_000, gid: 3_000_000, xattrs: new Map([["user.bin", ALL_BYTES], ["trusted.note", new Uint8Array([0, 1])]]) }),
    [entry({ name: "big", size: 3_000_001, mtime: ts(1_650_000_000, 1) }), pattern(3_000_001)],
    entry({ name: "empty", mode: 0o000 }),
  ];
  if (opts.symlinks !== false) {
    items.push(
      entry({ name: "bin/sh", type: "symlink", linkname: "tool", uid: 3, gid: 4, mtime: ts(1_400_000_000, 987_654_321) }),
      entry({ name: "far", type: "symlink", linkname: "../../../../../etc/passwd", mtime: ts(1_400_000_001, 1) }),
    );
  }
  return items;
}

/** Apply `items` (as a tar made by strata's TarWriter) to `dir`. */
export async function applyItems(dir: string, items: Item[], opts: Partial<ApplyOptions> = {}): Promise<number> {
  return applyLayer(dir, streamOf(await makeTar(items)), { sys, whiteouts: "delete", ...opts });
}

/** Every path under `root`, relative, sorted ("" excluded). */
export function listTree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      out.push(child);
      if (fs.lstatSync(path.join(root, child)).isDirectory()) walk(child);
    }
  };
  walk("");
  return out;
}
