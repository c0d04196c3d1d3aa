import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { applyLayer } from "../../src/archive/apply.ts";
import { changesDirs } from "../../src/archive/changes.ts";
import { changesSize } from "../../src/archive/size.ts";
import { InvalidLayerError } from "../../src/core/errors.ts";
import { entry, file, makeTar, streamOf } from "../helpers/layer-tar.ts";
import { snapshot } from "../helpers/tree.ts";
import { applyItems, CAPABILITY, emptyDir, isRoot, type Item, listTree, removeRootsAfterEach, richLayer, sys, tempRoot, ts } from "./layer-fixtures.ts";

removeRootsAfterEach();

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const ns = (sec: number, nsec: number) => String(BigInt(sec) * 1_000_000_000n + BigInt(nsec));

describe("applyLayer", () => {
  test.skipIf(!isRoot)("writes every entry type with its modes, owners, xattrs, devices and nanosecond times", async () => {
    const dir = emptyDir();
    await applyItems(dir, richLayer());
    const s = snapshot(dir, sys, { dirMtimes: true });
    expect(s["/bin/tool"]).toMatchObject({ type: "file", mode: "4755", uid: 0, mtimeNs: ns(1_600_000_000, 123_456_789) });
    expect(s["/bin/tool"].xattrs).toEqual({ "security.capability": hex(CAPABILITY) });
    expect(s["/bin/tool"].links).toEqual(["/bin/tool", "/bin/tool-link"]);
    expect(s["/bin/sgid"]).toMatchObject({ mode: "2711", gid: 42 });
    expect(s["/bin/sh"]).toMatchObject({ type: "symlink", target: "tool", uid: 3, gid: 4, mtimeNs: ns(1_400_000_000, 987_654_321) });
    expect(s["/far"]).toMatchObject({ type: "symlink", target: "../../../../../etc/passwd" });
    expect(s["/tmp"]).toMatchObject({ type: "dir", mode: "1777", mtimeNs: ns(1_500_000_002, 999_999_999) });
    // Directory times are set after their children were written.
    expect(s["/bin"].mtimeNs).toBe(ns(1_500_000_001, 1));
    expect(s["/dev"].mtimeNs).toBe(ns(1_500_000_003, 3));
    expect(s["/dev/null"]).toMatchObject({ type: "char", mode: "666", rdev: 0x103, mtimeNs: ns(1_500_000_004, 4) });
    expect(s["/dev/sda1"]).toMatchObject({ type: "block", mode: "660", gid: 6, rdev: 0x801 });
    expect(sys.lstat(path.join(dir, "dev/wide"))).toMatchObject({ rdevMajor: 511, rdevMinor: 65_537 });
    expect(s["/run/fifo"]).toMatchObject({ type: "fifo", mode: "620", uid: 7, mtimeNs: ns(1_500_000_005, 55) });
    expect(s["/home/u"]).toMatchObject({ type: "dir", mode: "2750", uid: 1234, gid: 5678 });
    expect(s["/home/u/notes"]).toMatchObject({ mode: "640", uid: 1234, gid: 5678, mtimeNs: ns(1_700_000_000, 999_999_999) });
    expect(s["/etc/conf"]).toMatchObject({ uid: 70_000, gid: 3_000_000 });
    expect(s["/etc/conf"].xattrs).toEqual({ "trusted.note": "0001", "user.bin": hex(Uint8Array.from({ length: 256 }, (_, i) => i)) });
    expect(s["/big"]).toMatchObject({ size: 3_000_001 });
    expect(s["/empty"]).toMatchObject({ mode: "0", size: 0 });
    // Directories the tar implies without listing them: 0755, root-owned.
    expect(s["/run"]).toMatchObject({ type: "dir", mode: "755", uid: 0, gid: 0 });
    expect(s["/etc"]).toMatchObject({ type: "dir", mode: "755" });
  });

  test.skipIf(!isRoot)("returns the content size, equal to changesSize of the result for a layer without whiteouts", async () => {
    const dir = emptyDir();
    const items = richLayer({ symlinks: false });
    const size = await applyItems(dir, items);
    expect(size).toBe("#!/bin/sh\necho tool\n".length + "sgid".length + "hello".length + "a=1\n".length + 3_000_001);
    expect(size).toBe(await changesSize(sys, dir, await changesDirs(dir, null, sys)));
  });

  test("counts whiteouts and skipped AUFS metadata in the size, as moby does", async () => {
    const dir = emptyDir();
    const size = await applyItems(dir, [file(".wh.x", "12"), file(".wh..wh.plnk/123", "abc"), file("a", "1")]);
    expect(size).toBe(6);
    expect(listTree(dir)).toEqual(["a"]);
  });

  test("applies a root entry's metadata to the layer directory itself", async () => {
    const dir = emptyDir();
    await applyItems(dir, [entry({ name: "./", type: "directory", mode: 0o711, mtime: ts(1_234_567_890, 42) }), file("f", "x")]);
    const st = sys.lstat(dir);
    expect(st.mode & 0o7777).toBe(0o711);
    expect(st.mtime).toEqual(ts(1_234_567_890, 42));
    await expect(applyItems(dir, [file("/", "x")])).rejects.toThrow(InvalidLayerError);
  });

  test("replaces existing entries, merging a directory into a directory", async () => {
    const dir = emptyDir();
    await applyItems(dir, [
      entry({ name: "d/", type: "directory", mode: 0o700 }),
      file("d/keep", "keep"),
      entry({ name: "was-dir/", type: "directory" }),
      file("was-dir/inner", "x"),
      file("was-file", "x"),
      entry({ name: "was-link", type: "symlink", linkname: "d" }),
    ]);
    await applyItems(dir, [
      entry({ name: "d/", type: "directory", mode: 0o750, uid: 5 }),
      file("was-dir", "now a file"),
      entry({ name: "was-file/", type: "directory" }),
      file("was-link", "now a file too"),
    ]);
    expect(listTree(dir)).toEqual(["d", "d/keep", "was-dir", "was-file", "was-link"]);
    expect(sys.lstat(path.join(dir, "d")).mode & 0o7777).toBe(0o750);
    expect(fs.readFileSync(path.join(dir, "was-dir"), "utf8")).toBe("now a file");
    expect(fs.lstatSync(path.join(dir, "was-file")).isDirectory()).toBe(true);
    expect(fs.lstatSync(path.join(dir, "was-link")).isFile()).toBe(true);
  });

  test("keeps entries in archive order when later ones replace small files still being written", async () => {
    const dir = emptyDir();
    const many = Array.from({ length: 40 }, (_, i) => file(`d/f${i}`, `${i}`));
    await applyItems(dir, [
      file("twice", "first"),
      file("twice", "second"),
      ...many,
      file("d", "d is a file now"),
      file("x", "soon a directory"),
      entry({ name: "x/", type: "directory" }),
      file("x/inside", "ok"),
    ]);
    expect(fs.readFileSync(path.join(dir, "twice"), "utf8")).toBe("second");
    expect(fs.readFileSync(path.join(dir, "d"), "utf8")).toBe("d is a file now");
    expect(listTree(dir)).toEqual(["d", "twice", "x", "x/inside"]);
    // A file under a name that is a file still being written is not a directory: refused, as tar would.
    await expect(applyItems(emptyDir("other"), [file("y", "file"), file("y/z", "under a file")])).rejects.toThrow('"y" is not a directory');
  });

  test.skipIf(!isRoot)("never sets overlayfs's own xattrs from a layer", async () => {
    const dir = emptyDir();
    const xattrs = new Map([["trusted.overlay.redirect", new TextEncoder().encode("/etc")], ["user.overlay.origin", new Uint8Array([1])], ["user.keep", new Uint8Array([2])]]);
    await applyItems(dir, [entry({ name: "d/", type: "directory", xattrs }), file("f", "x", { xattrs })]);
    for (const p of ["d", "f"]) expect(sys.llistxattr(path.join(dir, p))).toEqual(["user.keep"]);
  });

  test("shifts owners through the UID and GID maps", async () => {
    const dir = emptyDir();
    const maps = { uidMaps: [{ container_id: 0, host_id: 100_000, size: 65_536 }], gidMaps: [{ container_id: 0, host_id: 200_000, size: 65_536 }] };
    await applyItems(dir, [file("a/f", "x", { uid: 33, gid: 34 })], maps);
    expect(sys.lstat(path.join(dir, "a/f"))).toMatchObject({ uid: 100_033, gid: 200_034 });
    expect(sys.lstat(path.join(dir, "a"))).toMatchObject({ uid: 100_000, gid: 200_000 });
    await expect(applyItems(dir, [file("g", "x", { uid: 70_000 })], maps)).rejects.toThrow("Container UID 70000 cannot be mapped");
  });

  describe("AUFS whiteouts", () => {
    const lower: Item[] = [
      file("gone", "x"),
      entry({ name: "tree/sub/", type: "directory" }),
      file("tree/sub/f", "x"),
      file("dir/kept", "x"),
      file("dir/hidden", "x"),
      entry({ name: "dir/hidden-dir/", type: "directory" }),
      file("dir/hidden-dir/f", "x"),
    ];

    test("delete what they name in \"delete\" mode", async () => {
      const dir = emptyDir();
      await applyItems(dir, lower);
      await applyItems(dir, [entry({ name: ".wh.gone" }), entry({ name: ".wh.tree" }), entry({ name: "dir/.wh.hidden" })]);
      expect(listTree(dir)).toEqual(["dir", "dir/hidden-dir", "dir/hidden-dir/f", "dir/kept"]);
    });

    test.skipIf(!isRoot)("become character devices 0/0 in \"overlay\" mode", async () => {
      const dir = emptyDir();
      await applyItems(dir, lower);
      await applyItems(dir, [entry({ name: ".wh.gone", uid: 5, gid: 6 }), entry({ name: "new/.wh.never-there" })], { whiteouts: "overlay" });
      const st = sys.lstat(path.join(dir, "gone"));
      expect(st.mode).toBe(0o020000);
      expect(st).toMatchObject({ rdevMajor: 0, rdevMinor: 0, uid: 5, gid: 6 });
      expect(fs.lstatSync(path.join(dir, "new/never-there")).isCharacterDevice()).toBe(true);
      expect(fs.existsSync(path.join(dir, ".wh.gone"))).toBe(false);
    });

    test("make a directory opaque: \"delete\" keeps only what this layer wrote there", async () => {
      const dir = emptyDir();
      await applyItems(dir, lower);
      await applyItems(dir, [
        entry({ name: "dir/", type: "directory" }),
        file("dir/before", "written before the marker"),
        file("dir/implied/f", "in a directory the layer implies"),
        entry({ name: "dir/.wh..wh..opq" }),
        file("dir/after", "written after the marker"),
      ]);
      expect(listTree(dir).filter((p) => p.startsWith("dir/"))).toEqual(["dir/after", "dir/before", "dir/implied", "dir/implied/f"]);
      expect(listTree(dir)).toContain("tree/sub/f");
    });

    test.skipIf(!isRoot)("make a directory opaque: \"overlay\" sets trusted.overlay.opaque and deletes nothing", async () => {
      const dir = emptyDir();
      await applyItems(dir, lower);
      await applyItems(dir, [entry({ name: "dir/.wh..wh..opq" }), entry({ name: "fresh/.wh..wh..opq" })], { whiteouts: "overlay" });
      expect(hex(sys.lgetxattr(path.join(dir, "dir"), "trusted.overlay.opaque")!)).toBe("79");
      expect(hex(sys.lgetxattr(path.join(dir, "fresh"), "trusted.overlay.opaque")!)).toBe("79");
      expect(listTree(dir)).toContain("dir/hidden");
      expect(listTree(dir)).not.toContain("dir/.wh..wh..opq");
    });

    test("skip AUFS metadata and reject whiteouts that name no file", async () => {
      const dir = emptyDir();
      await applyItems(dir, [file(".wh..wh.plnk/1234.5", "x"), file("d/.wh..wh.aufs", "x"), file("d/f", "x")]);
      expect(listTree(dir)).toEqual(["d", "d/f"]);
      for (const name of ["d/.wh.", "d/.wh..", ".wh..."]) {
        await expect(applyItems(dir, [entry({ name })])).rejects.toThrow(InvalidLayerError);
      }
      expect(listTree(dir)).toEqual(["d", "d/f"]);
    });
  });

  describe("confinement", () => {
    /** A layer dir and an outside dir holding a sentinel that must survive. */
    const setup = () => {
      const root = tempRoot();
      const dir = path.join(root, "layer");
      const outside = path.join(root, `outside-${Math.random().toString(36).slice(2)}`);
      fs.mkdirSync(dir);
      fs.mkdirSync(outside);
      fs.writeFileSync(path.join(outside, "sentinel"), "still here");
      const untouched = () => {
        expect(fs.readdirSync(outside)).toEqual(["sentinel"]);
        expect(fs.readFileSync(path.join(outside, "sentinel"), "utf8")).toBe("still here");
        expect(fs.readdirSync(root).sort()).toEqual([path.basename(dir), path.basename(outside)].sort());
      };
      return { root, dir, outside, untouched };
    };

    test("rejects a name climbing out with .., naming the entry", async () => {
      const { dir, untouched } = setup();
      for (const name of ["../x", "a/../../x", "/../x", "./../x"]) {
        const err = await applyItems(dir, [file(name, "x")]).catch((e) => e);
        expect(err).toBeInstanceOf(InvalidLayerError);
        expect(err.message).toContain(`"${name}"`);
      }
      untouched();
    });

    test("treats absolute names as relative to the layer", async () => {
      const { dir, untouched } = setup();
      await applyItems(dir, [file("/abs/f", "x"), file("a/../b", "y"), file("./c//d/./e", "z")]);
      expect(listTree(dir)).toEqual(["abs", "abs/f", "b", "c", "c/d", "c/d/e"]);
      untouched();
    });

    test("refuses to write through a symlinked directory", async () => {
      const { dir, outside, untouched } = setup();
      const err = await applyItems(dir, [entry({ name: "a", type: "symlink", linkname: outside }), file("a/evil", "x")]).catch((e) => e);
      expect(err).toBeInstanceOf(InvalidLayerError);
      expect(err.message).toContain('"a/evil"');
      // Also when the symlink is already there from a lower layer, and as a relative link.
      await expect(applyItems(dir, [file("a/evil2", "x")])).rejects.toThrow(InvalidLayerError);
      fs.symlinkSync(`../${path.basename(outside)}`, path.join(dir, "rel"));
      await expect(applyItems(dir, [entry({ name: "rel/evil-dir/", type: "directory" })])).rejects.toThrow(InvalidLayerError);
      untouched();
    });

    test("notices a directory replaced by a symlink earlier in the same layer", async () => {
      const { dir, outside, untouched } = setup();
      const items = [entry({ name: "a/", type: "directory" }), file("a/x", "x"), entry({ name: "a", type: "symlink", linkname: outside }), file("a/evil", "x")];
      await expect(applyItems(dir, items)).rejects.toThrow('"a/evil"');
      untouched();
    });

    test("keeps hardlinks inside the layer and off symlinked paths", async () => {
      const { dir, outside, untouched } = setup();
      const bad = [
        [entry({ name: "pw", type: "link", linkname: "../../etc/passwd" })],
        [entry({ name: "l", type: "symlink", linkname: outside }), entry({ name: "pw", type: "link", linkname: "l/sentinel" })],
        [entry({ name: "pw", type: "link", linkname: "/" })],
        [entry({ name: "pw", type: "link", linkname: "not-there" })],
      ];
      for (const items of bad) await expect(applyItems(dir, items)).rejects.toThrow(InvalidLayerError);
      // An absolute target means the layer's own root, as moby reads it.
      await applyItems(dir, [file("etc/passwd", "root:x:0:0\n"), entry({ name: "pw", type: "link", linkname: "/etc/passwd" })]);
      expect(fs.lstatSync(path.join(dir, "pw")).ino).toBe(fs.lstatSync(path.join(dir, "etc/passwd")).ino);
      untouched();
    });

    for (const whiteouts of ["delete", "overlay"] as const) {
      test.skipIf(whiteouts === "overlay" && !isRoot)(`never deletes through a symlinked directory (${whiteouts} whiteouts)`, async () => {
        const { dir, outside, untouched } = setup();
        fs.symlinkSync(outside, path.join(dir, "a"));
        for (const name of ["a/.wh.sentinel", "a/.wh..wh..opq", "a/sub/.wh..wh..opq"]) {
          await expect(applyItems(dir, [entry({ name })], { whiteouts })).rejects.toThrow(InvalidLayerError);
        }
        expect(sys.lgetxattr(outside, "trusted.overlay.opaque")).toBeNull();
        untouched();
      });
    }

    test("stores a symlink's target verbatim, wherever it points", async () => {
      const { dir, outside, untouched } = setup();
      await applyItems(dir, [entry({ name: "up", type: "symlink", linkname: "../../../../etc" }), entry({ name: "out", type: "symlink", linkname: outside })]);
      expect(fs.readlinkSync(path.join(dir, "up"))).toBe("../../../../etc");
      expect(fs.readlinkSync(path.join(dir, "out"))).toBe(outside);
      untouched();
    });
  });

  test("fails on a truncated archive, leaving what it had written", async () => {
    const dir = emptyDir();
    const tar = await makeTar([file("a", "one"), file("b", "x".repeat(5000))]);
    await expect(applyLayer(dir, streamOf(tar.subarray(0, 512 * 3 + 100)), { sys, whiteouts: "delete" })).rejects.toThrow(InvalidLayerError);
    expect(fs.readFileSync(path.join(dir, "a"), "utf8")).toBe("one");
  });
});
