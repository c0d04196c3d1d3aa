/**
 * The EROFS writer against the directory apply: a tar written as an image, checked by fsck.erofs,
 * mounted and walked, must look exactly like the same tar applied to a directory in overlay form.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeImageFromTar } from "../../src/erofs/from-tar.ts";
import { BLOCK_SIZE } from "../../src/erofs/format.ts";
import { entry, file, makeTar, streamOf } from "../helpers/layer-tar.ts";
import { ALL_BYTES, CAPABILITY, type Item, pattern, removeRootsAfterEach, richLayer, sys, tempRoot, ts } from "../archive/layer-fixtures.ts";
import { fsck, imageOf, imageSnapshot, roundTrip, SKIP_REASON, withMounted } from "./erofs-fixtures.ts";

removeRootsAfterEach();
const skip = SKIP_REASON !== "";

describe(`writeImageFromTar${skip ? ` (skipped: ${SKIP_REASON})` : ""}`, () => {
  test.skipIf(skip)("writes every entry type with its metadata as the directory apply does", async () => {
    const { image, applied } = await roundTrip(richLayer());
    expect(image).toEqual(applied);
    // What the comparison rests on is really there.
    expect(image["/bin/tool"].xattrs["security.capability"]).toBe(Buffer.from(CAPABILITY).toString("hex"));
    expect(image["/bin/tool"].links).toEqual(["/bin/tool", "/bin/tool-link"]);
    expect(image["/bin/tool"].mode).toBe("4755");
    expect(image["/bin/tool"].mtimeNs).toBe("1600000000123456789");
    expect(image["/etc/conf"]).toMatchObject({ uid: 70_000, gid: 3_000_000 });
    expect(image["/etc/conf"].xattrs["user.bin"]).toBe(Buffer.from(ALL_BYTES).toString("hex"));
    expect(image["/dev/wide"].type).toBe("char");
    expect(image["/far"].target).toBe("../../../../../etc/passwd");
    expect(image["/big"].size).toBe(3_000_001);
    expect(image["/tmp"]).toMatchObject({ mode: "1777", mtimeNs: "1500000002999999999" });
  });

  test.skipIf(skip)("writes whiteouts as 0/0 character devices and opaque directories as trusted.overlay.opaque=y", async () => {
    const items: Item[] = [
      entry({ name: "gone/.wh..wh..opq", mtime: ts(5) }),
      file("gone/kept", "k"),
      entry({ name: ".wh.deleted", uid: 5, gid: 6 }),
      entry({ name: "d/", type: "directory", mtime: ts(1_000, 7) }),
      entry({ name: "d/.wh.sub" }),
      entry({ name: ".wh..wh.plnk/123" }),
    ];
    const { image, applied, raw } = await roundTrip(items);
    expect(image).toEqual(applied);
    expect(image["/gone"].xattrs["trusted.overlay.opaque"]).toBe("79");
    expect(image["/deleted"]).toMatchObject({ type: "char", rdev: 0, uid: 5, gid: 6, mode: "0" });
    expect(raw["/deleted"].mtimeNs).toBe("1600000000000000000");
    expect(image["/d/sub"]).toMatchObject({ type: "char", rdev: 0 });
    expect(image["/.wh..wh.plnk"]).toBeUndefined();
  });

  test.skipIf(skip)("later entries replace earlier ones; a directory over a directory merges", async () => {
    const items: Item[] = [
      file("a", "first"),
      file("a", "second", { mode: 0o600 }),
      entry({ name: "d/", type: "directory", mode: 0o700, xattrs: new Map([["user.one", Uint8Array.of(1)]]) }),
      file("d/inner", "x"),
      entry({ name: "d/", type: "directory", mode: 0o750, mtime: ts(1_234, 5), xattrs: new Map([["user.two", Uint8Array.of(2)]]) }),
      file("x/y", "deep"),
      file("x", "now a file"),
      file("target", "t"),
      entry({ name: "hl", type: "link", linkname: "target" }),
      file("target", "replaced"),
    ];
    const { image, applied } = await roundTrip(items);
    expect(image).toEqual(applied);
    expect(image["/d"].xattrs).toEqual({ "user.one": "01", "user.two": "02" });
    expect(image["/x"].type).toBe("file");
    // The hardlink keeps the inode it was made to; the replaced name is a new one.
    expect(image["/hl"].links).toBeUndefined();
    expect(image["/hl"].size).toBe(1);
  });

  test.skipIf(skip)("applies id maps to owners, whiteouts and implied directories", async () => {
    const maps = [{ container_id: 0, host_id: 100_000, size: 65_536 }];
    const items: Item[] = [file("a/b/c", "x", { uid: 33, gid: 44 }), entry({ name: ".wh.w", uid: 1, gid: 2 })];
    const { image, applied } = await roundTrip(items, { uidMaps: maps, gidMaps: maps });
    // The apply's root is the directory the test made; the image's is the container's root, mapped.
    expect(image["/"]).toMatchObject({ uid: 100_000, gid: 100_000, mode: "755" });
    delete image["/"];
    delete applied["/"];
    expect(image).toEqual(applied);
    expect(image["/a/b/c"]).toMatchObject({ uid: 100_033, gid: 100_044 });
    expect(image["/a"]).toMatchObject({ uid: 100_000, gid: 100_000, mode: "755" });
    expect(image["/w"]).toMatchObject({ uid: 100_001, gid: 100_002 });
  });

  test.skipIf(skip)("sizes around the block size: inline tails, whole blocks, tails that do not fit beside their inode", async () => {
    const big = new Map([["user.big", pattern(3_000)]]);
    const sizes = [0, 1, 4_031, 4_032, 4_033, 4_095, 4_096, 4_097, 8_192, 12_289, 70_000];
    const items: Item[] = sizes.flatMap((n) => [
      [entry({ name: `f${n}`, size: n }), pattern(n)] as Item,
      [entry({ name: `x${n}`, size: n, xattrs: big }), pattern(n)] as Item,
    ]);
    const { image, applied } = await roundTrip(items);
    expect(image).toEqual(applied);
    expect(image["/x4097"].xattrs["user.big"]).toHaveLength(6_000);
  });

  test.skipIf(skip)("directories of many blocks, names sorted as bytes (some below '.'), long and non-ASCII names", async () => {
    const names = ["-", "!bang", "+plus", "..dots", ".hidden", "Z", "a", "é", "日本語", "\u{1F600}", "x".repeat(255)];
    for (let i = 0; i < 1_500; i++) names.push(`file-${String(i).padStart(5, "0")}-${"n".repeat(i % 40)}`);
    const items: Item[] = names.map((n, i) => file(`big/${n}`, String(i)));
    items.push(entry({ name: "big/", type: "directory", mtime: ts(99, 9) }));
    const { image, applied } = await roundTrip(items);
    expect(image).toEqual(applied);
    expect(Object.keys(image).filter((p) => p.startsWith("/big/"))).toHaveLength(names.length);
  });

  test.skipIf(skip)("xattrs larger than a block, up to the largest value Linux allows", async () => {
    const xattrs = new Map([["user.a", pattern(60_000)], ["user.b", ALL_BYTES], ["trusted.t", pattern(65_535)], ["security.s", new Uint8Array(0)]]);
    const image = await imageOf(await makeTar([file("xl", "x", { xattrs }), file("after", "a")]));
    const snap = await imageSnapshot(image);
    for (const [name, value] of xattrs) expect(snap["/xl"].xattrs[name]).toBe(Buffer.from(value).toString("hex"));
    expect(snap["/after"].sha256).toBeDefined();
  });

  test.skipIf(skip)("symlinks of every length, times before 1970 and at the limits", async () => {
    const items: Item[] = [
      entry({ name: "s1", type: "symlink", linkname: "a" }),
      entry({ name: "s4000", type: "symlink", linkname: "t".repeat(4_000) }),
      entry({ name: "s4095", type: "symlink", linkname: `${"d/".repeat(2_000)}${"t".repeat(95)}` }),
      file("old", "o", { mtime: ts(-1_000_000, 5) }),
      file("far", "f", { mtime: ts(4_000_000_000, 999_999_999) }),
      entry({ name: "empty-dir/", type: "directory", uid: 65_536, mtime: ts(1, 1) }),
    ];
    const { image, applied } = await roundTrip(items);
    expect(image).toEqual(applied);
    expect(image["/s4095"].target).toHaveLength(4_095);
    expect(image["/old"].mtimeNs).toBe("-999999999999995");
  });

  test.skipIf(skip)("tails past the spool budget go through its scratch file and come back intact", async () => {
    const items: Item[] = [];
    for (let i = 0; i < 900; i++) items.push([entry({ name: `t/${i}`, size: 3_000 + i }), pattern(3_000 + i)]);
    const { image, applied } = await roundTrip(items, { spoolBudget: 2 << 20 });
    expect(image).toEqual(applied);
    expect(Object.keys(image)).toHaveLength(902);
  });

  test.skipIf(skip)("the same tar gives the same image bytes, whatever the chunking", async () => {
    const tar = await makeTar(richLayer());
    const first = await imageOf(tar, {}, 25_000);
    fsck(first);
    const a = fs.readFileSync(first);
    const b = fs.readFileSync(await imageOf(tar, {}, 511));
    expect(Buffer.compare(a, b)).toBe(0);
    expect(a.byteLength % BLOCK_SIZE).toBe(0);
    await imageSnapshot(await imageOf(tar));
  });

  test.skipIf(skip)("a mounted image cannot be written to", async () => {
    const image = await imageOf(await makeTar([file("a", "x")]));
    await withMounted(sys, image, (dir) => {
      expect(() => fs.writeFileSync(path.join(dir, "a"), "y")).toThrow(/EROFS|read-only/);
      expect(fs.readFileSync(path.join(dir, "a"), "utf8")).toBe("x");
    });
  });

  test("refuses to overwrite an existing file", async () => {
    const image = path.join(tempRoot(), "exists.erofs");
    fs.writeFileSync(image, "keep");
    await expect(writeImageFromTar(streamOf(await makeTar([file("a", "x")])), image)).rejects.toThrow(/EEXIST/);
    expect(fs.readFileSync(image, "utf8")).toBe("keep");
  });
});
