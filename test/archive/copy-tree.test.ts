import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { changesDirs } from "../../src/archive/changes.ts";
import { copyTree } from "../../src/archive/copy-tree.ts";
import { ErrnoError } from "../../src/core/errors.ts";
import type { Sys } from "../../src/sys/types.ts";
import { file } from "../helpers/layer-tar.ts";
import { snapshot } from "../helpers/tree.ts";
import { applyItems, emptyDir, isRoot, pattern, removeRootsAfterEach, richLayer, sys, tempRoot, ts } from "./layer-fixtures.ts";

removeRootsAfterEach();

const hasBtrfs = isRoot && fs.existsSync("/usr/sbin/mkfs.btrfs") && spawnSync("losetup", ["--version"]).status === 0;

/** `sys` with ficlone replaced, counting the calls. */
function withFiclone(ficlone: Sys["ficlone"]): { sys: Sys; calls: () => number } {
  let calls = 0;
  const wrapped: Sys = Object.create(sys);
  wrapped.ficlone = (src, dst) => {
    calls++;
    return ficlone(src, dst);
  };
  return { sys: wrapped, calls: () => calls };
}

/** A tree of `n` small files over a few directories. */
async function smallFiles(dir: string, n: number): Promise<void> {
  await applyItems(dir, Array.from({ length: n }, (_, i) => file(`d${i % 10}/f${i}`, `file ${i}\n`)));
}

describe("copyTree", () => {
  test.skipIf(!isRoot)("copies every entry type so that changesDirs finds nothing", async () => {
    const src = emptyDir("src");
    await applyItems(src, richLayer());
    sys.lutimes(path.join(src, "etc/conf"), ts(1_111_111_111, 111), ts(1_222_222_222, 222));
    sys.lutimes(src, ts(1_333_333_333, 3), ts(1_444_444_444, 4));
    const dst = path.join(tempRoot(), "copy");
    await copyTree(src, dst, sys);
    // Access times too (checked first: reading a file below moves its atime), and the root's own metadata.
    expect(sys.lstat(path.join(dst, "etc/conf")).atime).toEqual(ts(1_111_111_111, 111));
    expect(sys.lstat(dst)).toMatchObject({ mode: sys.lstat(src).mode, atime: ts(1_333_333_333, 3), mtime: ts(1_444_444_444, 4) });
    expect(await changesDirs(dst, src, sys)).toEqual([]);
    expect(snapshot(dst, sys, { dirMtimes: true })).toEqual(snapshot(src, sys, { dirMtimes: true }));
    expect(snapshot(dst, sys)["/bin/tool"].links).toEqual(["/bin/tool", "/bin/tool-link"]);
  });

  test("skips sockets", async () => {
    const src = emptyDir("src");
    fs.writeFileSync(path.join(src, "f"), "x");
    const server = net.createServer().listen(path.join(src, "sock"));
    await new Promise((resolve) => server.once("listening", resolve));
    try {
      const dst = path.join(tempRoot(), "copy");
      await copyTree(src, dst, sys);
      expect(fs.readdirSync(dst)).toEqual(["f"]);
    } finally {
      server.close();
    }
  });

  test("copies into an existing empty directory, and refuses a source that is not a directory", async () => {
    const src = emptyDir("src");
    fs.writeFileSync(path.join(src, "f"), "x");
    const dst = emptyDir("dst");
    await copyTree(src, dst, sys);
    expect(fs.readFileSync(path.join(dst, "f"), "utf8")).toBe("x");
    await expect(copyTree(path.join(src, "f"), path.join(tempRoot(), "x"), sys)).rejects.toThrow("is not a directory");
  });

  test("stops asking for reflinks after the filesystem refuses one", async () => {
    const src = emptyDir("src");
    await smallFiles(src, 200);
    const fake = withFiclone(() => {
      throw new ErrnoError("ficlone", 95); // EOPNOTSUPP, as ext4 answers
    });
    const dst = path.join(tempRoot(), "copy");
    await copyTree(src, dst, fake.sys);
    // Up to one refusal per concurrent copy, never one per file.
    expect(fake.calls()).toBeGreaterThanOrEqual(1);
    expect(fake.calls()).toBeLessThanOrEqual(16);
    expect(await changesDirs(dst, src, sys)).toEqual([]);
  });

  test("fails on any other reflink error", async () => {
    const src = emptyDir("src");
    fs.writeFileSync(path.join(src, "f"), "x");
    const fake = withFiclone(() => {
      throw new ErrnoError("ficlone", 5); // EIO
    });
    await expect(copyTree(src, path.join(tempRoot(), "copy"), fake.sys)).rejects.toThrow("EIO");
  });

  test.skipIf(!hasBtrfs)("reflinks every file on btrfs", async () => {
    const root = tempRoot();
    const image = path.join(root, "fs.img");
    const mnt = path.join(root, "mnt");
    fs.mkdirSync(mnt);
    fs.writeFileSync(image, "");
    fs.truncateSync(image, 256 << 20);
    expect(spawnSync("mkfs.btrfs", ["-q", image]).status).toBe(0);
    expect(spawnSync("mount", ["-o", "loop", image, mnt]).status).toBe(0);
    try {
      const src = path.join(mnt, "src");
      fs.mkdirSync(src);
      await smallFiles(src, 50);
      fs.writeFileSync(path.join(src, "big"), pattern(20 << 20));
      const counting = withFiclone((a, b) => sys.ficlone(a, b));
      const dst = path.join(mnt, "dst");
      await copyTree(src, dst, counting.sys);
      expect(counting.calls()).toBe(51);
      expect(await changesDirs(dst, src, sys)).toEqual([]);
      expect(fs.readFileSync(path.join(dst, "big")).equals(fs.readFileSync(path.join(src, "big")))).toBe(true);
    } finally {
      spawnSync("umount", [mnt]);
    }
  }, 60_000);
});
