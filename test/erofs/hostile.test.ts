/**
 * Hostile layer tars written as EROFS images: each is refused with an InvalidLayerError that says
 * what was wrong, and leaves nothing behind — no image, no tail spool, nothing outside.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { InvalidLayerError } from "../../src/core/errors.ts";
import { writeImageFromTar } from "../../src/erofs/from-tar.ts";
import { paxArchive, paxRecord, rawHeader } from "../archive/tar-raw.ts";
import { entry, file, makeTar, streamOf } from "../helpers/layer-tar.ts";
import { pattern, removeRootsAfterEach, tempRoot } from "../archive/layer-fixtures.ts";

removeRootsAfterEach();

/** A name, the tar (knowing where "outside" is), what the error must say. */
type Case = [string, (outside: string) => Promise<Uint8Array> | Uint8Array, RegExp];

const CASES: Case[] = [
  // The directory apply's hostile layers (test/hostile-layers.test.ts), against the writer.
  ["a name climbing out with ..", () => makeTar([file("../escape", "x")]), /"\.\.\/escape": it points outside the layer/],
  ["a symlink out of the layer, then a file written through it", (o) => makeTar([entry({ name: "link", type: "symlink", linkname: o }), file("link/pwned", "x")]), /"link\/pwned": "link" is a symlink/],
  ["a hardlink to a file outside the layer", () => makeTar([entry({ name: "hl", type: "link", linkname: "../../outside/sentinel" })]), /"hl": it points outside the layer/],
  ["a hardlink through a symlink", (o) => makeTar([entry({ name: "link", type: "symlink", linkname: o }), entry({ name: "hl", type: "link", linkname: "link/sentinel" })]), /"hl": "link" is a symlink/],
  ["a whiteout through a symlink out of the layer", (o) => makeTar([entry({ name: "link", type: "symlink", linkname: o }), entry({ name: "link/.wh.sentinel" })]), /"link\/\.wh\.sentinel": "link" is a symlink/],
  ["an opaque marker under a symlink", (o) => makeTar([entry({ name: "link", type: "symlink", linkname: o }), entry({ name: "link/.wh..wh..opq" })]), /"link\/\.wh\.\.wh\.\.opq": "link" is a symlink/],
  ["a file under a file", () => makeTar([file("f", "x"), file("f/g", "y")]), /"f\/g": "f" is not a directory/],
  ["a truncated archive", async () => (await makeTar([file("a", "x".repeat(4000)), file("b", "y")])).subarray(0, 1500), /Unexpected end of archive in the body of "a"/],
  ["a truncated archive in the middle of a whole block", async () => (await makeTar([[entry({ name: "a", size: 100_000 }), pattern(100_000)]])).subarray(0, 50_000), /Unexpected end of archive in the body of "a"/],
  ["a header with a bad checksum", () => {
    const tar = rawHeader(() => {});
    tar[0] ^= 0x20;
    return tar;
  }, /checksum mismatch/],
  ["a size field larger than the data", () => rawHeader((b) => b.set(new TextEncoder().encode("00004000000\0"), 124), new Uint8Array(600)), /Unexpected end of archive in the body of "file.txt"/],
  ["a 2 MiB PAX record", () => paxArchive(paxRecord("path", "a".repeat(2 << 20))), /PAX record of \d+ bytes exceeds the limit/],
  ["a name with a NUL byte", () => paxArchive(paxRecord("path", "a\u0000b")), /NUL in name/],
  ["a path deeper than PATH_MAX", () => paxArchive(paxRecord("path", "d/".repeat(3000) + "f")), /name longer than 4096 bytes/],
  ["a whiteout naming ..", () => makeTar([entry({ name: "d/.wh.." })]), /a whiteout must name a file/],
  ["a root that is not a directory", () => makeTar([file("./", "x")]), /the layer root must be a directory/],
  // What EROFS itself cannot hold.
  ["a name longer than 255 bytes", () => makeTar([file("n".repeat(256), "x")]), /a name longer than 255 bytes/],
  ["a hardlink to a directory", () => makeTar([entry({ name: "d/", type: "directory" }), entry({ name: "hl", type: "link", linkname: "d" })]), /hardlink target "d" is a directory/],
  ["a hardlink to the root", () => makeTar([entry({ name: "hl", type: "link", linkname: "./" })]), /a hardlink to the layer root/],
  ["a hardlink to nothing", () => makeTar([entry({ name: "hl", type: "link", linkname: "missing" })]), /hardlink target "missing" does not exist/],
  ["a hardlink to itself", () => makeTar([file("a", "x"), entry({ name: "a", type: "link", linkname: "a" })]), /hardlink target "a" does not exist/],
  ["a symlink with an empty target", () => makeTar([entry({ name: "s", type: "symlink", linkname: "" })]), /a symlink with an empty target/],
  ["a symlink target of PATH_MAX bytes", () => makeTar([entry({ name: "s", type: "symlink", linkname: "t".repeat(4096) })]), /a symlink target of 4096 bytes or more/],
  ["a device number beyond dev_t", () => makeTar([entry({ name: "c", type: "char", devmajor: 4096, devminor: 0 })]), /device 4096:0 is beyond what Linux can name/],
  ["an xattr in an unknown namespace", () => makeTar([file("f", "x", { xattrs: new Map([["system.nfs4_acl", Uint8Array.of(1)]]) })]), /xattr "system.nfs4_acl" is in a namespace EROFS cannot store/],
  ["an xattr with an empty name", () => makeTar([file("f", "x", { xattrs: new Map([["user.", Uint8Array.of(1)]]) })]), /xattr "user." has an empty name/],
  ["an xattr value over 64 KiB", () => makeTar([file("f", "x", { xattrs: new Map([["user.v", new Uint8Array(65_536)]]) })]), /has a value of 65536 bytes/],
  ["xattrs beyond what an inode holds", () => makeTar([file("f", "x", { xattrs: new Map(Array.from({ length: 5 }, (_, i) => [`user.v${i}`, new Uint8Array(60_000)])) })]), /exceed what one inode holds/],
];

describe("writeImageFromTar refuses hostile layers", () => {
  for (const [what, build, says] of CASES) {
    test(`refuses ${what}`, async () => {
      const root = tempRoot("strata-erofs-hostile-");
      const outside = path.join(root, "outside");
      fs.mkdirSync(outside);
      fs.writeFileSync(path.join(outside, "sentinel"), "keep me");
      const layers = path.join(root, "layers");
      fs.mkdirSync(layers);
      const image = path.join(layers, "layer.erofs");
      // A stream with files after the bad entry: the writer must stop, not carry on past it.
      const tar = await build(outside);
      const err = await writeImageFromTar(streamOf(tar, 4096), image, { spoolBudget: 0 }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidLayerError);
      expect(String((err as Error).message)).toMatch(says);
      expect(fs.readdirSync(layers)).toEqual([]);
      expect(fs.readdirSync(outside)).toEqual(["sentinel"]);
      expect(fs.readFileSync(path.join(outside, "sentinel"), "utf8")).toBe("keep me");
    });
  }

  test("a stream that fails midway leaves no image", async () => {
    const layers = tempRoot("strata-erofs-hostile-");
    const image = path.join(layers, "layer.erofs");
    const good = await makeTar([[entry({ name: "a", size: 200_000 }), pattern(200_000)]]);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= 100_000) return c.error(new Error("connection reset"));
        c.enqueue(good.subarray(sent, sent + 10_000));
        sent += 10_000;
      },
    });
    await expect(writeImageFromTar(stream, image)).rejects.toThrow(/connection reset/);
    expect(fs.readdirSync(layers)).toEqual([]);
  });
});
