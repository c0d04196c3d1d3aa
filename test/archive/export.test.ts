import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { applyLayer } from "../../src/archive/apply.ts";
import { changesDirs } from "../../src/archive/changes.ts";
import { copyTree } from "../../src/archive/copy-tree.ts";
import { exportChanges } from "../../src/archive/export.ts";
import { readTar } from "../../src/archive/tar-reader.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import type { Change } from "../../src/core/driver.ts";
import { bytesOf, entry, file, streamOf } from "../helpers/layer-tar.ts";
import { snapshot } from "../helpers/tree.ts";
import { applyItems, emptyDir, isRoot, removeRootsAfterEach, richLayer, sys, ts } from "./layer-fixtures.ts";

removeRootsAfterEach();

/** The headers of a tar. */
async function headers(tar: Uint8Array): Promise<TarHeader[]> {
  const out: TarHeader[] = [];
  for await (const e of readTar(streamOf(tar))) out.push(e.header);
  return out;
}

/** A snapshot without the root, whose own metadata no diff carries (`wholeSeconds`: mtimes cut to the second). */
const tree = (dir: string, wholeSeconds = false) => {
  const { "/": _root, ...rest } = snapshot(dir, sys, { dirMtimes: true, wholeSeconds });
  return rest;
};

/** The file descriptors of this process open on `file`. */
function fdsOn(file: string): number[] {
  return fs.readdirSync("/proc/self/fd").map(Number).filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false;
    }
  });
}

describe("exportChanges", () => {
  test.skipIf(!isRoot)("round-trips every entry type through apply with identical metadata", async () => {
    const src = emptyDir();
    await applyItems(src, richLayer());
    const tar = await bytesOf(exportChanges(src, await changesDirs(src, null, sys), sys));
    const dst = emptyDir();
    await applyLayer(dst, streamOf(tar), { sys, whiteouts: "delete" });
    // Times travel in whole seconds, as moby's FileInfoHeader writes them: the copy has exactly those.
    expect(tree(dst)).toEqual(tree(src, true));
    expect(await changesDirs(dst, src, sys)).toEqual([]);
    const byName = new Map((await headers(tar)).map((h) => [h.name, h]));
    expect(byName.get("bin/tool-link")).toMatchObject({ type: "link", linkname: "bin/tool", size: 0 });
    expect(byName.get("bin/")).toMatchObject({ type: "directory", mtime: ts(1_500_000_001, 0) });
    expect([...byName.values()].filter((h) => h.mtime.nsec !== 0)).toEqual([]);
    // No entry needs a PAX header for its time: an ordinary file is one 512-byte header block.
    expect(new TextDecoder().decode(tar).includes(" mtime=")).toBe(false);
  });

  test.skipIf(!isRoot)("writes deletions as .wh. files, so the diff applied to the parent gives the layer", async () => {
    const parent = emptyDir("parent");
    await applyItems(parent, richLayer());
    const layer = emptyDir("layer");
    await copyTree(parent, layer, sys);
    fs.rmSync(path.join(layer, "home/u"), { recursive: true });
    fs.rmSync(path.join(layer, "bin/sh"));
    fs.writeFileSync(path.join(layer, "etc/conf"), "a=2\n");
    fs.mkdirSync(path.join(layer, "new"));
    fs.linkSync(path.join(layer, "etc/conf"), path.join(layer, "new/conf-link"));
    const changes = await changesDirs(layer, parent, sys);
    const tar = await bytesOf(exportChanges(layer, changes, sys));
    // Deterministic: the same changes make the same bytes.
    expect(await bytesOf(exportChanges(layer, changes, sys))).toEqual(tar);
    const hs = await headers(tar);
    expect(hs.map((h) => h.name)).toEqual(["bin/", "bin/.wh.sh", "etc/", "etc/conf", "home/", "home/.wh.u", "new/", "new/conf-link"]);
    expect(hs[1]).toMatchObject({ type: "file", mode: 0, uid: 0, gid: 0, size: 0, mtime: ts(0, 0) });
    expect(hs[7]).toMatchObject({ type: "link", linkname: "etc/conf" });

    const rebuilt = emptyDir("rebuilt");
    await copyTree(parent, rebuilt, sys);
    await applyLayer(rebuilt, streamOf(tar), { sys, whiteouts: "delete" });
    // The changed paths come back with their times in whole seconds; the rest is the parent's copy.
    expect(tree(rebuilt, true)).toEqual(tree(layer, true));
    for (const name of ["etc/conf", "new/conf-link"]) expect(fs.lstatSync(path.join(rebuilt, name), { bigint: true }).mtimeNs % 1_000_000_000n).toBe(0n);
  });

  test.skipIf(!isRoot)("writes owners as the container sees them when given maps", async () => {
    const maps = { uidMaps: [{ container_id: 0, host_id: 100_000, size: 65_536 }], gidMaps: [{ container_id: 0, host_id: 100_000, size: 65_536 }] };
    const src = emptyDir();
    await applyItems(src, [file("f", "x", { uid: 33, gid: 34 })], maps);
    expect(sys.lstat(path.join(src, "f"))).toMatchObject({ uid: 100_033, gid: 100_034 });
    const tar = await bytesOf(exportChanges(src, [{ Path: "/f", Kind: 1 }], sys, maps));
    expect((await headers(tar))[0]).toMatchObject({ uid: 33, gid: 34 });
    // An id outside the maps cannot be represented: the stream fails rather than lie.
    fs.chownSync(path.join(src, "f"), 5, 5);
    await expect(bytesOf(exportChanges(src, [{ Path: "/f", Kind: 1 }], sys, maps))).rejects.toThrow("Host UID 5 cannot be mapped");
  });

  test("archives a hardlink whose other names are not in the set as a plain file", async () => {
    const dir = emptyDir();
    fs.writeFileSync(path.join(dir, "a"), "shared");
    fs.linkSync(path.join(dir, "a"), path.join(dir, "b"));
    const hs = await headers(await bytesOf(exportChanges(dir, [{ Path: "/b", Kind: 0 }], sys)));
    expect(hs).toHaveLength(1);
    expect(hs[0]).toMatchObject({ name: "b", type: "file", size: 6 });
  });

  test("leaves out paths that vanished, sockets, and anything behind a directory now a symlink", async () => {
    const dir = emptyDir();
    const outside = emptyDir("outside");
    fs.writeFileSync(path.join(outside, "secret"), "do not export");
    fs.symlinkSync(outside, path.join(dir, "d"));
    const server = net.createServer().listen(path.join(dir, "sock"));
    await new Promise((resolve) => server.once("listening", resolve));
    try {
      const changes: Change[] = [
        { Path: "/d/secret", Kind: 1 },
        { Path: "/missing", Kind: 1 },
        { Path: "/sock", Kind: 1 },
        { Path: "/kept", Kind: 1 },
      ];
      fs.writeFileSync(path.join(dir, "kept"), "k");
      const hs = await headers(await bytesOf(exportChanges(dir, changes, sys)));
      expect(hs.map((h) => h.name)).toEqual(["kept"]);
    } finally {
      server.close();
    }
  });

  test("reads a file only as fast as the reader pulls, and closes it on cancel", async () => {
    const dir = emptyDir();
    const big = path.join(dir, "big");
    fs.writeFileSync(big, Buffer.alloc(64 << 20, 1));
    const stream = exportChanges(dir, [{ Path: "/big", Kind: 1 }], sys);
    const reader = stream.getReader();
    await reader.read();
    await new Promise((r) => setTimeout(r, 100));
    const [fd] = fdsOn(big);
    expect(fd).toBeDefined();
    const pos = Number(/pos:\s+(\d+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))![1]);
    // The writer buffers about 1 MiB; nowhere near the 64 MiB of the file.
    expect(pos).toBeLessThan(4 << 20);
    await reader.cancel();
    await new Promise((r) => setTimeout(r, 50));
    expect(fdsOn(big)).toEqual([]);
  });

  test("fails the stream when a file shrinks while it is archived", async () => {
    const dir = emptyDir();
    const f = path.join(dir, "f");
    fs.writeFileSync(f, Buffer.alloc(8 << 20, 1));
    const stream = exportChanges(dir, [{ Path: "/f", Kind: 1 }], sys);
    const reader = stream.getReader();
    await reader.read();
    fs.truncateSync(f, 1000);
    const drain = async () => {
      for (;;) if ((await reader.read()).done) return;
    };
    await expect(drain()).rejects.toThrow("shrank");
  });

  test("includes a directory entry for a changed directory but not its unchanged children", async () => {
    const dir = emptyDir();
    await applyItems(dir, [entry({ name: "d/", type: "directory", mode: 0o711 }), file("d/f", "x")]);
    const hs = await headers(await bytesOf(exportChanges(dir, [{ Path: "/d", Kind: 0 }], sys)));
    expect(hs.map((h) => [h.name, h.type, h.mode])).toEqual([["d/", "directory", 0o711]]);
  });
});
