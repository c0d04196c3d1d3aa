import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { changesDirs, comparePaths } from "../../src/archive/changes.ts";
import { entry, file } from "../helpers/layer-tar.ts";
import { applyItems, CAPABILITY, emptyDir, isRoot, type Item, removeRootsAfterEach, sys, ts } from "./layer-fixtures.ts";

removeRootsAfterEach();

const A = 0;
const ADD = 1;
const DEL = 2;

/** A parent and a layer made from the same tar: identical but for what each test then changes. */
async function pair(items: Item[]): Promise<{ parent: string; layer: string }> {
  const parent = emptyDir("parent");
  const layer = emptyDir("layer");
  await applyItems(parent, items);
  await applyItems(layer, items);
  return { parent, layer };
}

const base: Item[] = [
  file("etc/hosts", "127.0.0.1 localhost\n", { mtime: ts(1_600_000_000, 500) }),
  file("etc/mode", "x"),
  file("etc/owner", "x"),
  file("etc/touched", "x", { mtime: ts(1_600_000_000, 1) }),
  file("etc/xattr", "x"),
  file("etc/cap", "x"),
  entry({ name: "etc/quiet/", type: "directory" }),
  file("etc/quiet/f", "x"),
  file("gone", "x"),
  entry({ name: "gone-tree/sub/", type: "directory" }),
  file("gone-tree/sub/f", "x"),
  file("file-to-dir", "x"),
  entry({ name: "dir-to-file/", type: "directory" }),
  file("dir-to-file/child", "x"),
  entry({ name: "link", type: "symlink", linkname: "etc" }),
];

describe("changesDirs", () => {
  test.skipIf(!isRoot)("reports what was added, modified and deleted, by moby's rules", async () => {
    const { parent, layer } = await pair(base);
    const at = (p: string) => path.join(layer, p);
    fs.writeFileSync(at("etc/hosts"), "10.0.0.1 box\n127.0.0.1 localhost\n"); // size and mtime
    fs.chmodSync(at("etc/mode"), 0o600);
    fs.chownSync(at("etc/owner"), 1, 1);
    sys.lutimes(at("etc/touched"), ts(1_600_000_000, 2), ts(1_600_000_000, 2)); // only the nanoseconds differ
    sys.lsetxattr(at("etc/xattr"), "user.note", new Uint8Array([1])); // not a change for moby
    sys.lsetxattr(at("etc/cap"), "security.capability", CAPABILITY); // a change
    sys.lutimes(at("etc/quiet"), ts(1, 0), ts(1, 0)); // a directory's own mtime is no change
    fs.rmSync(at("gone"));
    fs.rmSync(at("gone-tree"), { recursive: true });
    fs.rmSync(at("file-to-dir"));
    fs.mkdirSync(at("file-to-dir"));
    fs.writeFileSync(at("file-to-dir/inner"), "x");
    fs.rmSync(at("dir-to-file"), { recursive: true });
    fs.writeFileSync(at("dir-to-file"), "x");
    fs.mkdirSync(at("new/deep"), { recursive: true });
    fs.writeFileSync(at("new/deep/f"), "x");
    fs.symlinkSync("/", at("new-link"));

    expect(await changesDirs(layer, parent, sys)).toEqual([
      { Path: "/dir-to-file", Kind: A },
      { Path: "/etc", Kind: A },
      { Path: "/etc/cap", Kind: A },
      { Path: "/etc/hosts", Kind: A },
      { Path: "/etc/mode", Kind: A },
      { Path: "/etc/owner", Kind: A },
      { Path: "/etc/touched", Kind: A },
      { Path: "/file-to-dir", Kind: A },
      { Path: "/file-to-dir/inner", Kind: ADD },
      { Path: "/gone", Kind: DEL },
      { Path: "/gone-tree", Kind: DEL },
      { Path: "/new", Kind: ADD },
      { Path: "/new-link", Kind: ADD },
      { Path: "/new/deep", Kind: ADD },
      { Path: "/new/deep/f", Kind: ADD },
    ]);
  });

  test("finds nothing between two identical trees", async () => {
    const { parent, layer } = await pair(base);
    expect(await changesDirs(layer, parent, sys)).toEqual([]);
  });

  test("treats a whole-second time as equal to the same second with nanoseconds", async () => {
    const { parent, layer } = await pair([file("f", "x", { mtime: ts(1_600_000_000, 123) }), file("g", "x", { mtime: ts(1_600_000_000, 123) })]);
    sys.lutimes(path.join(layer, "f"), ts(1_600_000_000, 0), ts(1_600_000_000, 0));
    sys.lutimes(path.join(layer, "g"), ts(1_600_000_001, 123), ts(1_600_000_001, 123));
    expect(await changesDirs(layer, parent, sys)).toEqual([{ Path: "/g", Kind: A }]);
  });

  test("lists everything as added without a parent, sorted as Go sorts bytes", async () => {
    const layer = emptyDir();
    await applyItems(layer, [file("a/b", "x"), file("a.b", "x"), file("a-", "x"), file("é", "x")]);
    expect(await changesDirs(layer, null, sys)).toEqual([
      { Path: "/a", Kind: ADD },
      { Path: "/a-", Kind: ADD },
      { Path: "/a.b", Kind: ADD },
      { Path: "/a/b", Kind: ADD },
      { Path: "/é", Kind: ADD },
    ]);
  });

  test("compares symlinks themselves and never walks into them", async () => {
    const outside = emptyDir("outside");
    fs.writeFileSync(path.join(outside, "secret"), "x");
    const { parent, layer } = await pair([entry({ name: "l", type: "symlink", linkname: outside })]);
    fs.rmSync(path.join(layer, "l"));
    fs.symlinkSync(`${outside}/`, path.join(layer, "l")); // a longer target: a size change
    fs.symlinkSync(outside, path.join(layer, "m"));
    expect(await changesDirs(layer, parent, sys)).toEqual([{ Path: "/l", Kind: A }, { Path: "/m", Kind: ADD }]);
  });
});

describe("comparePaths", () => {
  test("orders by UTF-8 bytes, not UTF-16 units", () => {
    // U+FF5E is one UTF-16 unit above the surrogates, but its UTF-8 bytes sort below U+1F600's.
    expect(["/\u{1F600}", "/\uFF5E", "/a"].sort(comparePaths)).toEqual(["/a", "/\uFF5E", "/\u{1F600}"]);
    expect(["/a/b", "/a.b", "/a"].sort(comparePaths)).toEqual(["/a", "/a.b", "/a/b"]);
  });
});
