/**
 * The EROFS writer under Deno, no test framework: one layer tar written as an image, checked by
 * `fsck.erofs`, mounted through the Deno FFI adapter (as root) and read back. Run from the repo
 * root: `node_modules/.bin/deno run -A test/erofs-deno-smoke.ts`. Prints "N passed, N failed".
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import type { TarHeader } from "../src/archive/tar-types.ts";
import { TarWriter } from "../src/archive/tar-writer.ts";
import { InvalidLayerError } from "../src/core/errors.ts";
import { writeImageFromDir } from "../src/erofs/from-dir.ts";
import { writeImageFromTar } from "../src/erofs/from-tar.ts";
import { createSys } from "../src/sys/deno.ts";
import { smoke } from "./helpers/smoke-tally.ts";
import { MNT, MS } from "../src/sys/types.ts";

const sys = createSys();
const tally = smoke();
const check = tally.checkAsync;

function h(p: Partial<TarHeader> & { name: string }): TarHeader {
  return { type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 1_600_000_000, nsec: 5 }, linkname: "", devmajor: 0, devminor: 0, xattrs: new Map(), ...p };
}

async function tar(items: Array<[TarHeader, Uint8Array?]>): Promise<ReadableStream<Uint8Array>> {
  const w = new TarWriter();
  const bytes = new Response(w.stream).arrayBuffer();
  for (const [header, body] of items) await w.add(header, body);
  await w.finish();
  const all = new Uint8Array(await bytes);
  return new ReadableStream({ start(c) { c.enqueue(all); c.close(); } });
}

const fsck = (image: string) => spawnSync("fsck.erofs", ["--extract", image], { encoding: "utf8" });
const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-erofs-deno-"));
const isRoot = process.getuid?.() === 0;
try {
  const big = new Uint8Array(10_000).map((_, i) => i & 0xff);
  const image = path.join(root, "layer.erofs");
  const stats = await writeImageFromTar(await tar([
    [h({ name: "etc/", type: "directory", mode: 0o755 })],
    [h({ name: "etc/hello", size: 6, xattrs: new Map([["user.k", Uint8Array.of(1, 2)]]) }), new TextEncoder().encode("hello\n")],
    [h({ name: "big", size: big.byteLength, mtime: { sec: 1, nsec: 999_999_999 } }), big],
    [h({ name: "link", type: "link", linkname: "big" })],
    [h({ name: "sym", type: "symlink", linkname: "etc/hello" })],
    [h({ name: ".wh.gone" })],
  ]), image, { sync: true });
  await check("reports the size of the tar's entries", () => stats.tarSize === 10_006);
  await check("the image is whole blocks", () => fs.statSync(image).size === stats.bytes && stats.bytes % 4096 === 0);
  const r = fsck(image);
  await check("fsck.erofs accepts the image", () => r.status === 0 || `${r.stdout}${r.stderr}`);

  let refused = false;
  try {
    await writeImageFromTar(await tar([[h({ name: "out", type: "symlink", linkname: "/" })], [h({ name: "out/evil", size: 1 }), Uint8Array.of(1)]]), path.join(root, "bad.erofs"));
  } catch (err) {
    refused = err instanceof InvalidLayerError;
  }
  await check("refuses a write through a symlink and leaves no image", () => refused && !fs.existsSync(path.join(root, "bad.erofs")));

  const canMount = isRoot && fs.readFileSync("/proc/filesystems", "utf8").includes("\terofs\n");
  if (!canMount) console.log("skipped the mount checks: they need root and a kernel with erofs");
  else {
    const mnt = path.join(root, "mnt");
    fs.mkdirSync(mnt);
    sys.mount(image, mnt, "erofs", MS.RDONLY, "");
    try {
      await check("the kernel reads a file", () => fs.readFileSync(path.join(mnt, "etc/hello"), "utf8") === "hello\n");
      await check("a whole-block file with its tail", () => Buffer.compare(fs.readFileSync(path.join(mnt, "big")), big) === 0);
      await check("nanosecond mtimes", () => sys.lstat(path.join(mnt, "big")).mtime.nsec === 999_999_999);
      await check("hardlinks share an inode", () => sys.lstat(path.join(mnt, "link")).ino === sys.lstat(path.join(mnt, "big")).ino && sys.lstat(path.join(mnt, "big")).nlink === 2);
      await check("xattrs", () => sys.lgetxattr(path.join(mnt, "etc/hello"), "user.k")?.join() === "1,2");
      await check("a whiteout is a 0/0 character device", () => (sys.lstat(path.join(mnt, "gone")).mode & 0o170000) === 0o020000);
      await check("symlinks", () => fs.readlinkSync(path.join(mnt, "sym")) === "etc/hello");
      const again = path.join(root, "again.erofs");
      await writeImageFromDir(mnt, again, { sys });
      await check("the mounted tree imaged again passes fsck.erofs", () => fsck(again).status === 0);
    } finally {
      sys.umount2(mnt, MNT.DETACH);
    }
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
tally.finish();
