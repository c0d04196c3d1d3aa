/**
 * The layer operations under Deno: apply, changes, export, size and copy on real files, with the
 * Deno FFI adapter, no test framework. Run from the repo root (as root, for devices and owners):
 * `node_modules/.bin/deno run -A test/archive/layer-deno-smoke.ts`.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { applyLayer } from "../../src/archive/apply.ts";
import { changesDirs } from "../../src/archive/changes.ts";
import { copyTree } from "../../src/archive/copy-tree.ts";
import { exportChanges } from "../../src/archive/export.ts";
import { changesSize } from "../../src/archive/size.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import { TarWriter } from "../../src/archive/tar-writer.ts";
import { InvalidLayerError } from "../../src/core/errors.ts";
import { createSys } from "../../src/sys/deno.ts";
import { smoke } from "../helpers/smoke-tally.ts";

const sys = createSys();
const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-layer-deno-"));
const tally = smoke();
const check = tally.ok;

const h = (x: Partial<TarHeader> & { name: string }): TarHeader => ({
  type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 1_600_000_000, nsec: 123_456_789 },
  linkname: "", devmajor: 0, devminor: 0, xattrs: new Map(), ...x,
});
const text = (s: string) => new TextEncoder().encode(s);

async function tar(items: Array<[TarHeader, Uint8Array?]>): Promise<ReadableStream<Uint8Array>> {
  const writer = new TarWriter();
  const bytes = new Response(writer.stream).arrayBuffer();
  for (const [header, body] of items) await writer.add(header, body);
  await writer.finish();
  return new Response(await bytes).body!;
}

const isRoot = process.getuid?.() === 0;
const big = new Uint8Array(300_000).fill(9);
const layer: Array<[TarHeader, Uint8Array?]> = [
  [h({ name: "bin/", type: "directory", mode: 0o755, mtime: { sec: 1_500_000_000, nsec: 7 } })],
  [h({ name: "bin/tool", size: 5, mode: 0o4755 }), text("tool\n")],
  [h({ name: "bin/tool-link", type: "link", linkname: "bin/tool" })],
  [h({ name: "bin/sh", type: "symlink", linkname: "tool", mtime: { sec: 1_400_000_000, nsec: 1 } })],
  [h({ name: "big", size: big.byteLength }), big],
  [h({ name: "run/fifo", type: "fifo", mode: 0o600 })],
  [h({ name: "etc/conf", size: 4, xattrs: new Map([["user.tag", new Uint8Array([0, 255])]]) }), text("a=1\n")],
];
if (isRoot) layer.push([h({ name: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3, uid: 5, gid: 6 })]);

try {
  const a = path.join(root, "a");
  fs.mkdirSync(a);
  const size = await applyLayer(a, await tar(layer), { sys, whiteouts: "delete" });
  check("applyLayer returns the content size", size === 5 + big.byteLength + 4, String(size));
  const tool = sys.lstat(path.join(a, "bin/tool"));
  check("setuid mode and nanosecond mtime survive", (tool.mode & 0o7777) === 0o4755 && tool.mtime.nsec === 123_456_789);
  check("directory mtime set last", sys.lstat(path.join(a, "bin")).mtime.nsec === 7);
  check("symlink mtime", sys.lstat(path.join(a, "bin/sh")).mtime.sec === 1_400_000_000);
  check("hardlink", tool.nlink === 2);

  const changes = await changesDirs(a, null, sys);
  const expectedSize = await changesSize(sys, a, changes);
  check("changesSize counts the symlink target, hardlinks once", expectedSize === size + "tool".length, String(expectedSize));

  const b = path.join(root, "b");
  fs.mkdirSync(b);
  await applyLayer(b, exportChanges(a, changes, sys), { sys, whiteouts: "delete" });
  const diff = await changesDirs(b, a, sys);
  check("export → apply round trip is identical", diff.length === 0, JSON.stringify(diff));

  const c = path.join(root, "c");
  await copyTree(a, c, sys);
  const copyDiff = await changesDirs(c, a, sys);
  check("copyTree leaves no changes", copyDiff.length === 0, JSON.stringify(copyDiff));

  fs.rmSync(path.join(c, "bin"), { recursive: true });
  fs.writeFileSync(path.join(c, "new"), "n");
  const cd = await changesDirs(c, a, sys);
  check("changes of a child", JSON.stringify(cd) === JSON.stringify([{ Path: "/bin", Kind: 2 }, { Path: "/new", Kind: 1 }]), JSON.stringify(cd));

  const outside = path.join(root, "outside");
  fs.mkdirSync(outside);
  let refused = false;
  try {
    await applyLayer(a, await tar([[h({ name: "out", type: "symlink", linkname: outside })], [h({ name: "out/evil", size: 1 }), text("x")]]), { sys, whiteouts: "delete" });
  } catch (err) {
    refused = err instanceof InvalidLayerError;
  }
  check("refuses to write through a symlink", refused && fs.readdirSync(outside).length === 0);
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
tally.finish();
