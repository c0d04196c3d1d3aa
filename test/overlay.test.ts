import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { exportUpper } from "../src/archive/overlay-export.ts";
import { readTar } from "../src/archive/tar-reader.ts";
import type { Driver } from "../src/core/driver.ts";
import { ErrIncompatibleFS, ErrNotSupported, ErrnoError, InvalidRequestError, StrataError } from "../src/core/errors.ts";
import { silentLogger } from "../src/core/log.ts";
import { createSys } from "../src/sys/bun.ts";
import { DT, type Sys } from "../src/sys/types.ts";
import { initOverlay } from "../drivers/overlay/driver.ts";
import {
  Layout, childLowers, formatLower, idOfLinkTarget, isLinkId, linkTarget, newLinkId, parseLower,
} from "../drivers/overlay/layout.ts";
import { nativeDiffProblem } from "../drivers/overlay/host.ts";
import { LowerView } from "../drivers/overlay/lower-view.ts";
import { layerMount, mountData, needsFsconfig, splitOption } from "../drivers/overlay/mount-spec.ts";
import { mountSpec, unmount } from "../src/mount/mounter.ts";
import { mountsUnder, parseMountInfo } from "../src/mount/mountinfo.ts";
import { upperChanges, upperSize } from "../drivers/overlay/upper-changes.ts";
import { runDriverSuite } from "./driver-suite.ts";
import { bytesOf, entry, file, makeTar, streamOf } from "./helpers/layer-tar.ts";
import { lowerdirPlusUnavailable, overlayUnavailable } from "./helpers/overlay-probe.ts";
import { unmountBelow } from "./helpers/mounts.ts";

const sys = createSys();
const isRoot = process.getuid?.() === 0;
const S_IFCHR = 0o020000;
const OPAQUE = "trusted.overlay.opaque";

const NO_OVERLAY = overlayUnavailable(sys) ?? undefined;
const canMountOverlay = NO_OVERLAY === undefined;
// Linux 6.1 (Debian 12) has the new mount API but not lowerdir+: the driver then mounts with mount(2)
// and its chains stop at 129 layers; the tests that need more say so.
const NO_LOWERDIR_PLUS = canMountOverlay ? (await lowerdirPlusUnavailable(sys)) ?? undefined : NO_OVERLAY;
const hasLowerdirPlus = NO_LOWERDIR_PLUS === undefined;

/** A new overlay driver on `home`. */
function newDriver(home: string, options: Record<string, string> = {}): Promise<Driver> {
  return initOverlay({ home, options, uidMaps: [], gidMaps: [], sys, log: silentLogger });
}

runDriverSuite({ name: "overlay", sys, newDriver: (home) => newDriver(home), skip: canMountOverlay ? undefined : NO_OVERLAY });
runDriverSuite({
  name: "overlay (mount(2) with short links)",
  sys,
  newDriver: (home) => newDriver(home, { mount_method: "mount" }),
  skip: canMountOverlay ? undefined : NO_OVERLAY,
});
runDriverSuite({
  name: "overlay (naive diff)",
  sys,
  newDriver: (home) => newDriver(home, { native_diff: "false" }),
  skip: canMountOverlay ? undefined : NO_OVERLAY,
});

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-overlay-"));
});
afterEach(() => {
  unmountBelow(sys, root);
  fs.rmSync(root, { recursive: true, force: true });
});

/** Files under `dir`, as {path: content-or-type}. */
function _tree(dir: string, rel = ""): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
    const p = path.join(rel, name);
    const st = fs.lstatSync(path.join(dir, p));
    if (st.isDirectory()) Object.assign(out, { [`${p}/`]: "dir" }, _tree(dir, p));
    else if (st.isFile()) out[p] = fs.readFileSync(path.join(dir, p), "utf8");
    else out[p] = st.isCharacterDevice() ? `char ${st.rdev}` : "other";
  }
  return out;
}

describe("layout", () => {
  test("keeps overlay2's names under Home", () => {
    const l = new Layout("/h");
    expect([l.diff("a"), l.work("a"), l.merged("a"), l.linkFile("a"), l.lowerFile("a"), l.link("X")]).toEqual([
      "/h/a/diff", "/h/a/work", "/h/a/merged", "/h/a/link", "/h/a/lower", "/h/.l/X",
    ]);
    expect(linkTarget("a")).toBe("../a/diff");
    expect(idOfLinkTarget("../a/diff")).toBe("a");
    expect(idOfLinkTarget("/etc/passwd")).toBeNull();
  });

  test("refuses IDs that are not one safe path component, so none can reach our own names", () => {
    expect(new Layout("/h").diff("l")).toBe("/h/l/diff");
    expect(() => new Layout("/h").diff("../x")).toThrow("Invalid layer ID");
    expect(() => new Layout("/h").diff(".l")).toThrow("Invalid layer ID");
    expect(() => new Layout("/h").diff(".tmp")).toThrow("Invalid layer ID");
  });

  test("makes 26-character base32 link names, different each time", () => {
    const ids = new Set(Array.from({ length: 1000 }, newLinkId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(isLinkId(id)).toBe(true);
  });

  test("reads and writes lower files, nearest parent first", () => {
    const a = ".l/AAAAAAAAAAAAAAAAAAAAAAAAAA";
    const b = ".l/BBBBBBBBBBBBBBBBBBBBBBBBBB";
    expect(childLowers("CCCCCCCCCCCCCCCCCCCCCCCCCC", [a, b])).toEqual([".l/CCCCCCCCCCCCCCCCCCCCCCCCCC", a, b]);
    expect(parseLower(formatLower([a, b]))).toEqual([a, b]);
    expect(parseLower("")).toEqual([]);
    expect(() => parseLower(`${a}:/etc`)).toThrow("Corrupt lower file");
    expect(() => parseLower(".l/../../x")).toThrow("Corrupt lower file");
  });
});

describe("layerMount", () => {
  const lowers = [".l/AAAAAAAAAAAAAAAAAAAAAAAAAA", ".l/BBBBBBBBBBBBBBBBBBBBBBBBBB"];
  const base = { home: "/h", id: "c", lowers, readonly: false, pageSize: 4096 };

  test("passes each lower layer as its own lowerdir+ with the new mount API", () => {
    expect(layerMount({ ...base, method: "fsconfig", extra: ["index=off"] })).toEqual({
      type: "overlay",
      source: "overlay",
      options: ["index=off", `lowerdir+=/h/${lowers[0]}`, `lowerdir+=/h/${lowers[1]}`, "upperdir=/h/c/diff", "workdir=/h/c/work"],
    });
  });

  test("names paths relative to the layer's own dir when an absolute one exceeds fsconfig's 255 bytes", () => {
    const id = "c".repeat(250);
    expect(layerMount({ ...base, id, method: "fsconfig" })).toEqual({
      type: "overlay",
      source: "overlay",
      options: [`lowerdir+=../${lowers[0]}`, `lowerdir+=../${lowers[1]}`, "upperdir=diff", "workdir=work"],
      cwd: `/h/${id}`,
    });
    expect(layerMount({ ...base, id, method: "fsconfig", readonly: true }).options[0]).toBe("lowerdir+=diff");
    expect(layerMount({ ...base, id: "c".repeat(245), method: "fsconfig" }).cwd).toBeUndefined();
  });

  test("mounts a layer with children read-only: its own diff on top, no upper", () => {
    const spec = layerMount({ ...base, method: "mount", readonly: true });
    expect(spec.options).toEqual([`lowerdir=/h/c/diff:/h/${lowers[0]}:/h/${lowers[1]}`]);
    expect(layerMount({ ...base, method: "fsconfig", readonly: true }).options[0]).toBe("lowerdir+=/h/c/diff");
  });

  test("uses absolute paths with mount(2) while they fit a page, then overlay2's relative links", () => {
    const abs = layerMount({ ...base, method: "mount" });
    expect(abs.cwd).toBeUndefined();
    expect(mountData(abs)).toBe(`lowerdir=/h/${lowers[0]}:/h/${lowers[1]},upperdir=/h/c/diff,workdir=/h/c/work`);

    const long = "/var/lib/" + "d".repeat(200);
    const many = Array.from({ length: 120 }, () => `.l/${newLinkId()}`);
    const rel = layerMount({ ...base, home: long, lowers: many, method: "mount" });
    expect(rel.cwd).toBe(long);
    expect(rel.options).toEqual([`lowerdir=${many.join(":")}`, "upperdir=c/diff", "workdir=c/work"]);
    expect(mountData(rel).length).toBeLessThan(4096);
  });

  test("names the limit it hits", () => {
    const deep = (n: number) => Array.from({ length: n }, () => `.l/${newLinkId()}`);
    expect(() => layerMount({ ...base, lowers: deep(129), method: "mount" })).toThrow(
      'Cannot mount layer "c": its 129 lower layers exceed the limit of 128 for mount(2)',
    );
    expect(() => layerMount({ ...base, lowers: deep(501), method: "fsconfig" })).toThrow("exceed the limit of 500 of overlayfs");
    expect(() => layerMount({ ...base, lowers: deep(128), method: "mount", pageSize: 2048 })).toThrow(
      /its mount options take \d+ bytes, more than mount\(2\) accepts \(2047\)/,
    );
    expect(layerMount({ ...base, lowers: deep(500), method: "fsconfig" }).options.length).toBe(502);
    // overlay2's budget: 128 short links and a 64-character ID's upper and work dirs fit one page.
    const id = "f".repeat(64);
    const full = layerMount({ ...base, id, home: `/${"h".repeat(300)}`, lowers: deep(128), method: "mount", extra: ["index=off"] });
    expect(full.cwd).toBe(`/${"h".repeat(300)}`);
    expect(mountData(full).length).toBeLessThanOrEqual(4095);
  });

  test("splits options for fsconfig and knows which need it", () => {
    expect(splitOption("lowerdir+=/a=b")).toEqual(["lowerdir+", "/a=b"]);
    expect(splitOption("userxattr")).toEqual(["userxattr", null]);
    expect(needsFsconfig(layerMount({ ...base, method: "fsconfig" }))).toBe(true);
    expect(needsFsconfig(layerMount({ ...base, method: "mount" }))).toBe(false);
  });
});

describe("mountinfo", () => {
  const text = [
    "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
    "90 26 0:50 / /h/abc/merged rw,relatime shared:5 - overlay overlay rw,lowerdir=/h/l/A,upperdir=/h/abc/diff",
    "91 90 0:51 / /h/abc/merged/with\\040space rw - tmpfs tmpfs rw",
    "92 26 0:52 / /hx/other rw - overlay overlay rw",
    "garbage line",
  ].join("\n");

  test("parses fields, optional tags and octal escapes", () => {
    const mounts = parseMountInfo(text);
    expect(mounts.length).toBe(4);
    expect(mounts[1]).toEqual({
      id: 90, parentId: 26, mountPoint: "/h/abc/merged", fsType: "overlay", source: "overlay",
      superOptions: "rw,lowerdir=/h/l/A,upperdir=/h/abc/diff",
    });
    expect(mounts[2].mountPoint).toBe("/h/abc/merged/with space");
  });

  test("finds mounts strictly under a directory, deepest first", () => {
    expect(mountsUnder(parseMountInfo(text), "/h").map((m) => m.mountPoint)).toEqual(["/h/abc/merged/with space", "/h/abc/merged"]);
  });
});

describe("LowerView and upperChanges", () => {
  /** Make `spec` under `dir`: "name/" dirs, "name" files, "name!" whiteouts, "name/*" opaque dirs. */
  const build = (dir: string, spec: string[]) => {
    fs.mkdirSync(dir, { recursive: true });
    for (const item of spec) {
      const p = path.join(dir, item.replace(/[!*]$/, "").replace(/\/$/, ""));
      fs.mkdirSync(path.dirname(p), { recursive: true });
      if (item.endsWith("!")) sys.mknod(p, S_IFCHR, 0, 0);
      else if (item.endsWith("/*")) {
        fs.mkdirSync(p, { recursive: true });
        sys.lsetxattr(p, OPAQUE, new TextEncoder().encode("y"));
      } else if (item.endsWith("/")) fs.mkdirSync(p, { recursive: true });
      else fs.writeFileSync(p, item);
    }
    return dir;
  };

  test.skipIf(!isRoot)("resolves paths through whiteouts and opaque directories like overlay", () => {
    const l0 = build(path.join(root, "l0"), ["a/gone!", "b/*", "b/new", "file-to-dir/", "x!"]);
    const l1 = build(path.join(root, "l1"), ["a/gone", "a/kept", "b/old", "file-to-dir", "x/deep", "y/z"]);
    const view = new LowerView(sys, [l0, l1]);
    expect(view.lookup("/a/kept")).not.toBeNull();
    expect(view.lookup("/a/gone")).toBeNull();
    expect(view.lookup("/b/old")).toBeNull();
    expect(view.lookup("/b/new")).not.toBeNull();
    expect(view.lookup("/x/deep")).toBeNull();
    expect(view.lookup("/y/z")).not.toBeNull();
    expect(view.lookup("/nope/deeper")).toBeNull();
    expect([...view.list("/a").keys()]).toEqual(["kept"]);
    expect([...view.list("/b").keys()]).toEqual(["new"]);
    expect([...view.list("/").keys()].sort()).toEqual(["a", "b", "file-to-dir", "y"]);
  });

  test.skipIf(!canMountOverlay)("agrees with the kernel about what a stack of lower layers shows", () => {
    const l0 = build(path.join(root, "l0"), ["a/gone!", "b/*", "b/new", "c!", "d/e/f!", "g/"]);
    const l1 = build(path.join(root, "l1"), ["a/gone", "a/kept", "b/old", "c/inner", "d/e/f", "d/e/g", "g/*", "g/h"]);
    const l2 = build(path.join(root, "l2"), ["a/deep", "b/older", "d/k", "g/hidden", "m/n"]);
    const merged = path.join(root, "m");
    fs.mkdirSync(merged);
    sys.mount("overlay", merged, "overlay", 0, `lowerdir=${l0}:${l1}:${l2}`);
    const view = new LowerView(sys, [l0, l1, l2]);
    const check = (rel: string) => {
      const want = fs.readdirSync(path.join(merged, rel)).sort();
      expect([...view.list(rel).keys()].sort()).toEqual(want);
      for (const name of want) {
        expect(view.lookup(path.join(rel, name))).not.toBeNull();
        if (fs.lstatSync(path.join(merged, rel, name)).isDirectory()) check(path.join(rel, name));
      }
    };
    check("/");
    expect(view.lookup("/g/hidden")).toBeNull();
    expect(view.lookup("/c/inner")).toBeNull();
  });

  test.skipIf(!canMountOverlay)("reports what changed in a mounted layer the way a tree comparison does", async () => {
    const lower = build(path.join(root, "lower"), ["etc/config", "etc/old/a", "etc/old/b", "bin/busybox", "bin/sh", "keep/x", "dir/a", "dir/b"]);
    const upper = path.join(root, "upper");
    const merged = path.join(root, "merged");
    for (const d of [upper, path.join(root, "work"), merged]) fs.mkdirSync(d);
    sys.mount("overlay", merged, "overlay", 0, `lowerdir=${lower},upperdir=${upper},workdir=${root}/work`);
    fs.writeFileSync(path.join(merged, "new-file"), "new");
    fs.mkdirSync(path.join(merged, "new-dir"));
    fs.writeFileSync(path.join(merged, "new-dir/inner"), "x");
    fs.writeFileSync(path.join(merged, "etc/config"), "changed");
    fs.rmSync(path.join(merged, "etc/old"), { recursive: true });
    fs.rmSync(path.join(merged, "bin/busybox"));
    // Removed and made again: overlay marks it opaque; the parent's a and b are gone.
    fs.rmSync(path.join(merged, "dir"), { recursive: true });
    fs.mkdirSync(path.join(merged, "dir"));
    fs.writeFileSync(path.join(merged, "dir/b"), "again");
    // Created and deleted again: keep/ is copied up but nothing in it changed.
    fs.writeFileSync(path.join(merged, "keep/tmp"), "");
    fs.rmSync(path.join(merged, "keep/tmp"));
    sys.umount2(merged, 0);

    expect(sys.lgetxattr(path.join(upper, "dir"), OPAQUE)).toEqual(new TextEncoder().encode("y"));
    expect(fs.existsSync(path.join(upper, "keep"))).toBe(true);
    expect(await upperChanges(sys, upper, [lower])).toEqual([
      { Path: "/bin", Kind: 0 },
      { Path: "/bin/busybox", Kind: 2 },
      { Path: "/dir", Kind: 0 },
      { Path: "/dir/a", Kind: 2 },
      { Path: "/dir/b", Kind: 0 },
      { Path: "/etc", Kind: 0 },
      { Path: "/etc/config", Kind: 0 },
      { Path: "/etc/old", Kind: 2 },
      { Path: "/new-dir", Kind: 1 },
      { Path: "/new-dir/inner", Kind: 1 },
      { Path: "/new-file", Kind: 1 },
    ]);
    expect(await upperSize(sys, upper)).toBe("new".length + "x".length + "changed".length + "again".length);
  });
});

describe("exportUpper", () => {
  test.skipIf(!isRoot)("turns whiteouts and opaque directories into AUFS entries and drops overlay's attributes", async () => {
    const upper = path.join(root, "upper");
    fs.mkdirSync(path.join(upper, "etc/opaque"), { recursive: true });
    sys.lsetxattr(path.join(upper, "etc/opaque"), OPAQUE, new TextEncoder().encode("y"));
    sys.lsetxattr(path.join(upper, "etc"), "trusted.overlay.impure", new TextEncoder().encode("y"));
    sys.lsetxattr(path.join(upper, "etc"), "user.kept", new TextEncoder().encode("1"));
    fs.chmodSync(path.join(upper, "etc/opaque"), 0o750);
    fs.writeFileSync(path.join(upper, "etc/opaque/new"), "new");
    sys.mknod(path.join(upper, "etc/gone"), S_IFCHR, 0, 0);
    sys.lchown(path.join(upper, "etc/gone"), 7, 8);
    fs.writeFileSync(path.join(upper, "hard"), "linked");
    fs.linkSync(path.join(upper, "hard"), path.join(upper, "hard2"));
    fs.symlinkSync("hard", path.join(upper, "sym"));

    const entries: Array<{ name: string; type: string; mode: number; uid: number; linkname: string; xattrs: string[]; body: string }> = [];
    for await (const e of readTar(exportUpper(upper, { sys }))) {
      let body = "";
      for await (const chunk of e.body) body += new TextDecoder().decode(chunk);
      const h = e.header;
      entries.push({ name: h.name, type: h.type, mode: h.mode, uid: h.uid, linkname: h.linkname, xattrs: [...h.xattrs.keys()], body });
    }
    expect(entries).toEqual([
      { name: "etc/", type: "directory", mode: 0o755, uid: 0, linkname: "", xattrs: ["user.kept"], body: "" },
      { name: "etc/.wh.gone", type: "file", mode: 0, uid: 0, linkname: "", xattrs: [], body: "" },
      { name: "etc/opaque/", type: "directory", mode: 0o750, uid: 0, linkname: "", xattrs: [], body: "" },
      { name: "etc/opaque/.wh..wh..opq", type: "file", mode: 0o750, uid: 0, linkname: "", xattrs: [], body: "" },
      { name: "etc/opaque/new", type: "file", mode: 0o644, uid: 0, linkname: "", xattrs: [], body: "new" },
      { name: "hard", type: "file", mode: 0o644, uid: 0, linkname: "", xattrs: [], body: "linked" },
      { name: "hard2", type: "link", mode: 0o644, uid: 0, linkname: "hard", xattrs: [], body: "" },
      { name: "sym", type: "symlink", mode: 0o777, uid: 0, linkname: "hard", xattrs: [], body: "" },
    ]);
  });

  test("fails the stream when the upper dir cannot be read", async () => {
    await expect(bytesOf(exportUpper(path.join(root, "missing"), { sys }))).rejects.toThrow("ENOENT");
  });
});

describe("mounter", () => {
  const dirs = () => {
    const p = (n: string) => path.join(root, n);
    for (const d of ["l1", "l2", "u", "w", "m"]) fs.mkdirSync(p(d));
    fs.writeFileSync(p("l1/f"), "top");
    fs.writeFileSync(p("l2/f"), "bottom");
    fs.writeFileSync(p("l2/g"), "g");
    return p;
  };

  test.skipIf(!canMountOverlay)("mounts with mount(2), from a working directory for relative paths, and restores it", () => {
    const p = dirs();
    const cwd = process.cwd();
    mountSpec(sys, { type: "overlay", source: "overlay", options: ["lowerdir=l1:l2", "upperdir=u", "workdir=w"], cwd: root }, p("m"));
    expect(process.cwd()).toBe(cwd);
    expect(_tree(p("m"))).toEqual({ f: "top", g: "g" });
    expect(unmount(sys, p("m"))).toBe("unmounted");
    expect(unmount(sys, p("m"))).toBe("not-mounted");
  });

  test.skipIf(!hasLowerdirPlus)(`mounts with the new mount API and reports the kernel's reason when it fails${hasLowerdirPlus ? "" : ` (skipped: ${NO_LOWERDIR_PLUS})`}`, () => {
    const p = dirs();
    mountSpec(sys, { type: "overlay", source: "overlay", options: [`lowerdir+=${p("l1")}`, `lowerdir+=${p("l2")}`, `upperdir=${p("u")}`, `workdir=${p("w")}`] }, p("m"));
    expect(_tree(p("m"))).toEqual({ f: "top", g: "g" });
    unmount(sys, p("m"));
    const bad = { type: "overlay" as const, source: "overlay" as const, options: [`lowerdir+=${p("l1")}`, "bogus=1"] };
    let err: unknown;
    try {
      mountSpec(sys, bad, p("m"), 'layer "x"');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StrataError);
    expect((err as Error).message).toBe(`Cannot mount layer "x": overlay: Unknown parameter 'bogus' (fsconfig "bogus=1": EINVAL)`);
    expect(() => mountSpec(sys, { ...bad, options: [`lowerdir+=${p("nope")}`] }, p("m"))).toThrow(`fsconfig "lowerdir+=${p("nope")}": ENOENT`);
  });

  test.skipIf(!canMountOverlay)("detaches a busy mount", () => {
    const p = dirs();
    mountSpec(sys, { type: "overlay", source: "overlay", options: [`lowerdir=${p("l1")}:${p("l2")}`] }, p("m"));
    const fd = fs.openSync(p("m/f"), "r");
    try {
      expect(unmount(sys, p("m"))).toBe("detached");
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.readdirSync(p("m"))).toEqual([]);
  });
});

describe("overlay driver", () => {
  let home: string;
  let driver: Driver;
  beforeEach(async () => {
    if (!canMountOverlay) return;
    home = path.join(root, "home");
    driver = await newDriver(home);
  });
  afterEach(async () => {
    if (canMountOverlay) await driver.cleanup();
  });
  const it = (name: string, fn: () => Promise<void>, timeout = 30_000) => test.skipIf(!canMountOverlay)(name, fn, timeout);
  const mountAt = (dir: string) => parseMountInfo(fs.readFileSync("/proc/self/mountinfo", "utf8")).find((m) => m.mountPoint === dir);
  const apply = async (id: string, parent: string, items: Parameters<typeof makeTar>[0], d = driver) => {
    await d.create(id, parent, {});
    return d.applyDiff(id, parent, streamOf(await makeTar(items)));
  };
  /** Every entry of a tar: its header fields and its bytes. */
  const entries = async (tar: ReadableStream<Uint8Array>) => {
    const out: Array<Record<string, unknown>> = [];
    for await (const e of readTar(tar)) {
      const chunks: Uint8Array[] = [];
      for await (const c of e.body) chunks.push(c.slice());
      const { xattrs, ...h } = e.header;
      out.push({ ...h, xattrs: Object.fromEntries([...xattrs].map(([k, v]) => [k, Buffer.from(v).toString("hex")])), body: Buffer.concat(chunks).toString("hex") });
    }
    return out;
  };
  const names = async (tar: ReadableStream<Uint8Array>) => (await entries(tar)).map((e) => e.name);

  it("mounts a layer made by Create with an upper dir, so writes through Get land in it (BuildKit)", async () => {
    await apply("base", "", [file("etc/a", "a")]);
    await driver.create("snap", "base", {});
    const dir = await driver.get("snap", "");
    expect(dir).toBe(path.join(home, "snap", "merged"));
    expect(mountAt(dir)?.superOptions).toContain(`upperdir=${path.join(home, "snap", "diff")}`);
    fs.writeFileSync(path.join(dir, "etc/b"), "b");
    await driver.put("snap");
    expect(fs.readFileSync(path.join(home, "snap", "diff", "etc", "b"), "utf8")).toBe("b");
    expect(await driver.changes("snap", "base")).toEqual([{ Path: "/etc", Kind: 0 }, { Path: "/etc/b", Kind: 1 }]);
    expect(await names(await driver.diff("snap", "base"))).toEqual(["etc/", "etc/b"]);
    expect(await driver.diffSize("snap", "base")).toBe(1);
  });

  it("stores AUFS whiteouts as overlay ones and gives them back as AUFS in Diff", async () => {
    await apply("base", "", [file("etc/config", "c"), file("etc/old/a", "a"), file("etc/old/b", "b"), file("keep", "k")]);
    await apply("top", "base", [
      entry({ name: "etc/", type: "directory" }),
      entry({ name: "etc/.wh.config" }),
      entry({ name: "etc/old/", type: "directory", mode: 0o750 }),
      entry({ name: "etc/old/.wh..wh..opq" }),
      file("etc/old/c", "c"),
    ]);
    const upper = path.join(home, "top", "diff");
    const wh = sys.lstat(path.join(upper, "etc/config"));
    expect([wh.mode & 0o170000, wh.rdevMajor, wh.rdevMinor]).toEqual([S_IFCHR, 0, 0]);
    expect(sys.lgetxattr(path.join(upper, "etc/old"), OPAQUE)).toEqual(new TextEncoder().encode("y"));
    expect(_tree(upper)).toEqual({ "etc/": "dir", "etc/config": "char 0", "etc/old/": "dir", "etc/old/c": "c" });

    const merged = await driver.get("top", "");
    expect(_tree(merged)).toEqual({ "etc/": "dir", "etc/old/": "dir", "etc/old/c": "c", keep: "k" });
    await driver.put("top");

    expect(await names(await driver.diff("top", "base"))).toEqual(["etc/", "etc/.wh.config", "etc/old/", "etc/old/.wh..wh..opq", "etc/old/c"]);
    expect(await driver.changes("top", "base")).toEqual([
      { Path: "/etc", Kind: 0 },
      { Path: "/etc/config", Kind: 2 },
      { Path: "/etc/old", Kind: 0 },
      { Path: "/etc/old/a", Kind: 2 },
      { Path: "/etc/old/b", Kind: 2 },
      { Path: "/etc/old/c", Kind: 1 },
    ]);
    await driver.create("copy", "base", {});
    await driver.applyDiff("copy", "base", await driver.diff("top", "base"));
    expect(_tree(path.join(home, "copy", "diff"))).toEqual(_tree(upper));
  });

  test.skipIf(!hasLowerdirPlus)(`mounts a chain of 501 layers (overlay's 500 lowers) and reads it from the top${hasLowerdirPlus ? "" : ` (skipped: ${NO_LOWERDIR_PLUS})`}`, async () => {
    let parent = "";
    for (let i = 0; i <= 500; i++) {
      const items: Parameters<typeof makeTar>[0] = [file(`f${i}`, String(i)), file("top", String(i))];
      if (i % 100 === 99) items.push(entry({ name: `.wh.f${i - 1}` }));
      await apply(`c${i}`, parent, items);
      parent = `c${i}`;
    }
    const dir = await driver.get(parent, "");
    expect(fs.readFileSync(path.join(dir, "top"), "utf8")).toBe("500");
    expect(fs.readFileSync(path.join(dir, "f0"), "utf8")).toBe("0");
    expect(fs.readdirSync(dir).length).toBe(501 - 5 + 1);
    expect(fs.existsSync(path.join(dir, "f98"))).toBe(false);
    await driver.put(parent);
    await expect(driver.create("too-deep", parent, {})).rejects.toThrow(
      'Cannot create layer "too-deep": its chain of 502 layers is deeper than this host can mount (501)',
    );
  }, 300_000);

  it("stops a mount(2) chain at 129 layers (overlay2's 128 lowers), on any kernel, and says why", async () => {
    const short = await newDriver(path.join(root, "mount2"), { mount_method: "mount" });
    try {
      expect(Object.fromEntries(await short.status())["Mount method"]).toBe("mount(2), short links (up to 129 layers)");
      let parent = "";
      for (let i = 0; i <= 128; i++) {
        await short.create(`m${i}`, parent, {});
        parent = `m${i}`;
      }
      fs.writeFileSync(path.join(root, "mount2", "m0", "diff", "bottom"), "0");
      const dir = await short.get(parent, "");
      expect(fs.readFileSync(path.join(dir, "bottom"), "utf8")).toBe("0");
      await short.put(parent);
      await expect(short.create("too-deep", parent, {})).rejects.toThrow(
        'Cannot create layer "too-deep": its chain of 130 layers is deeper than this host can mount (129)',
      );
    } finally {
      await short.cleanup();
    }
  }, 120_000);

  it("gives the same Diff, Changes and DiffSize natively as the naive diff does", async () => {
    await apply("base", "", [
      file("etc/config", "a=1\n", { xattrs: new Map([["user.tag", new Uint8Array([1, 2])]]) }),
      file("home/notes.txt", "hello", { mode: 0o640, uid: 1000 }),
      file("bin/busybox", "busybox", { mode: 0o755 }),
      entry({ name: "bin/sh", type: "symlink", linkname: "busybox" }),
    ]);
    await driver.createReadWrite("c", "base", {});
    const dir = await driver.get("c", "");
    fs.writeFileSync(path.join(dir, "etc/config"), "a=2\n");
    fs.chmodSync(path.join(dir, "home/notes.txt"), 0o600);
    fs.chownSync(path.join(dir, "home"), 5, 6);
    fs.mkdirSync(path.join(dir, "new/deeper"), { recursive: true });
    fs.writeFileSync(path.join(dir, "new/deeper/file"), Buffer.alloc(300_000, 9));
    fs.linkSync(path.join(dir, "new/deeper/file"), path.join(dir, "new/hardlink"));
    fs.symlinkSync("../etc/config", path.join(dir, "new/symlink"));
    // moby's tree comparison only sees xattr changes to security.capability, so the xattr goes on a new file.
    sys.lsetxattr(path.join(dir, "new/deeper/file"), "user.mark", new Uint8Array([7]));
    fs.rmSync(path.join(dir, "bin/busybox"));
    sys.mknod(path.join(dir, "new/fifo"), 0o010644, 0, 0);
    await driver.put("c");

    const native = await entries(await driver.diff("c", "base"));
    const nativeChanges = await driver.changes("c", "base");
    const nativeSize = await driver.diffSize("c", "base");
    await driver.cleanup();
    const naive = await newDriver(home, { native_diff: "false" });
    try {
      expect(Object.fromEntries(await naive.status())["Native Overlay Diff"]).toBe("false");
      expect(native).toEqual(await entries(await naive.diff("c", "base")));
      expect(nativeChanges).toEqual(await naive.changes("c", "base"));
      expect(nativeSize).toBe(await naive.diffSize("c", "base"));
    } finally {
      await naive.cleanup();
    }
    expect(native.map((e) => e.name)).toContain("new/hardlink");
  });

  it("falls back to the naive diff against a layer that is not the parent", async () => {
    await apply("base", "", [file("a", "a")]);
    await apply("mid", "base", [file("b", "b")]);
    await apply("top", "mid", [file("c", "c")]);
    expect(await names(await driver.diff("top", "mid"))).toEqual(["c"]);
    expect(await names(await driver.diff("top", "base"))).toEqual(["b", "c"]);
    expect(await driver.changes("top", "base")).toEqual([{ Path: "/b", Kind: 1 }, { Path: "/c", Kind: 1 }]);
    expect(await driver.diffSize("top", "base")).toBe(2);
  });

  it("counts references: two Gets and one Put leave the layer mounted", async () => {
    await apply("base", "", [file("a", "a")]);
    expect(await driver.get("base", "")).toBe(path.join(home, "base", "diff"));
    await driver.put("base");
    await driver.createReadWrite("c", "base", {});
    const dir = await driver.get("c", "");
    expect(await driver.get("c", "")).toBe(dir);
    await driver.put("c");
    expect(mountAt(dir)?.fsType).toBe("overlay");
    expect(Object.fromEntries(await driver.status())["Active mounts"]).toBe("1");
    expect(fs.readFileSync(path.join(dir, "a"), "utf8")).toBe("a");
    await driver.put("c");
    expect(mountAt(dir)).toBeUndefined();
    expect(fs.existsSync(dir)).toBe(false);
    expect(Object.fromEntries(await driver.status())["Active mounts"]).toBe("0");
  });

  it("keeps a running container's mount across a plugin restart, unmounts the rest, and finishes half-done work", async () => {
    await apply("base", "", [file("a", "a")]);
    await driver.createReadWrite("c", "base", {});
    const dir = await driver.get("c", "");
    fs.writeFileSync(path.join(dir, "written"), "before the crash");
    const stray = path.join(home, ".tmp", "stray-mount");
    fs.mkdirSync(stray, { recursive: true });
    sys.mount("tmpfs", stray, "tmpfs", 0, "size=1m");
    fs.mkdirSync(path.join(home, ".tmp", "new-ghost-1-1", "diff"), { recursive: true });
    fs.symlinkSync("../ghost/diff", path.join(home, ".l", newLinkId()));
    const linkOfC = fs.readFileSync(path.join(home, "c", "link"), "utf8");
    fs.unlinkSync(path.join(home, ".l", linkOfC));

    // A new process on the same Home, as after a SIGKILL: the daemon does not Get "c" again.
    const next = await newDriver(home);
    try {
      expect(mountAt(dir)?.fsType).toBe("overlay");
      expect(fs.readFileSync(path.join(dir, "written"), "utf8")).toBe("before the crash");
      expect(mountAt(stray)).toBeUndefined();
      expect(fs.readdirSync(path.join(home, ".tmp"))).toEqual([]);
      expect(fs.readdirSync(path.join(home, ".l")).sort()).toEqual(
        [fs.readFileSync(path.join(home, "base", "link"), "utf8"), linkOfC].sort(),
      );
      expect(Object.fromEntries(await next.status())["Active mounts"]).toBe("1");
      // The container stops: the daemon's Put releases the adopted reference.
      await next.put("c");
      expect(mountAt(dir)).toBeUndefined();
      const again = await next.get("c", "");
      expect(fs.readFileSync(path.join(again, "written"), "utf8")).toBe("before the crash");
      await next.put("c");
    } finally {
      await next.cleanup();
    }
  });

  it("answers GetMetadata like overlay2, with no LowerDir for a base layer", async () => {
    await apply("base", "", [file("a", "a")]);
    await driver.create("mid", "base", {});
    await driver.create("top", "mid", {});
    const dirOf = (id: string, sub: string) => path.join(home, id, sub);
    expect(await driver.getMetadata("base")).toEqual({ WorkDir: dirOf("base", "work"), MergedDir: dirOf("base", "merged"), UpperDir: dirOf("base", "diff") });
    expect(await driver.getMetadata("top")).toEqual({
      WorkDir: dirOf("top", "work"),
      MergedDir: dirOf("top", "merged"),
      UpperDir: dirOf("top", "diff"),
      LowerDir: `${dirOf("mid", "diff")}:${dirOf("base", "diff")}`,
    });
    await expect(driver.getMetadata("nope")).rejects.toThrow('Cannot inspect layer "nope": it does not exist');
  });

  it("reports status like overlay2, plus layers and mounts", async () => {
    await driver.create("a", "", {});
    const status = Object.fromEntries(await driver.status());
    expect(status).toMatchObject({
      "Backing Filesystem": "extfs",
      "Supports d_type": "true",
      "Native Overlay Diff": "true",
      userxattr: "false",
      Layers: "1",
      "Active mounts": "0",
    });
    expect(status["Mount method"]).toBe(hasLowerdirPlus ? "new mount API, one lowerdir+ per layer (up to 501 layers)" : "mount(2), short links (up to 129 layers)");
  });

  it("refuses a Home on a filesystem overlay cannot use", async () => {
    const dirs = ["lo", "up", "wk", "ov"].map((d) => path.join(root, d));
    for (const d of dirs) fs.mkdirSync(d);
    sys.mount("overlay", dirs[3], "overlay", 0, `lowerdir=${dirs[0]},upperdir=${dirs[1]},workdir=${dirs[2]}`);
    const err = await newDriver(path.join(dirs[3], "home")).catch((e) => e);
    expect(err).toBeInstanceOf(ErrIncompatibleFS);
    expect(err.message).toContain("cannot keep layers on overlayfs");
  });

  it("mounts(): a chain past one page is stacked on the parent's own mount unless the caller's fits accepts it flat", async () => {
    let parent = "";
    for (let i = 0; i < 110; i++) {
      await driver.create(`m${i}`, parent, {});
      fs.writeFileSync(path.join(home, `m${i}`, "diff", `f${i}`), String(i));
      parent = `m${i}`;
    }
    await driver.create("top", parent, {});
    const flat = await driver.mounts("top", false, () => true);
    expect(flat).toHaveLength(1);
    expect(flat[0]!.options.find((o) => o.startsWith("lowerdir="))!.split(":")).toHaveLength(110);
    expect(flat[0]!.options.join(",").length).toBeGreaterThan(4096);
    expect(mountAt(path.join(home, parent, "merged"))).toBeUndefined();
    // The default (mount(2) of the options as they are) does not take 110 absolute lowers: one lower, the parent's mount.
    const stacked = await driver.mounts("top", false);
    expect(stacked).toHaveLength(1);
    expect(stacked[0]).toMatchObject({ type: "overlay", source: "overlay" });
    // (index=off and userxattr come first where the host needs them.)
    expect(stacked[0]!.options.filter((o) => o.includes("dir="))).toEqual(
      [`lowerdir=${path.join(home, parent, "merged")}`, `upperdir=${path.join(home, "top", "diff")}`, `workdir=${path.join(home, "top", "work")}`],
    );
    expect(fs.readFileSync(path.join(home, parent, "merged", "f0"), "utf8")).toBe("0");
    expect(fs.readFileSync(path.join(home, parent, "merged", "f109"), "utf8")).toBe("109");
    await driver.remove("top");
    await driver.remove(parent);
    expect(mountAt(path.join(home, parent, "merged"))).toBeUndefined();
  }, 60_000);

  it("stops mount(2) chains at overlay2's 128 lowers with a clear error, mounting them from Home", async () => {
    const short = await newDriver(path.join(root, "short"), { mount_method: "mount" });
    try {
      let parent = "";
      for (let i = 0; i <= 128; i++) {
        await short.create(`s${i}`, parent, {});
        parent = `s${i}`;
      }
      await expect(short.create("s129", parent, {})).rejects.toThrow("deeper than this host can mount (129)");
      fs.writeFileSync(path.join(root, "short", "s0", "diff", "bottom"), "b");
      const cwd = process.cwd();
      const dir = await short.get(parent, "");
      expect(process.cwd()).toBe(cwd);
      // Absolute paths would not fit a page: the mount names the short links relative to Home.
      expect(mountAt(dir)?.superOptions).toContain("lowerdir=.l/");
      expect(fs.readFileSync(path.join(dir, "bottom"), "utf8")).toBe("b");
      await short.put(parent);
    } finally {
      await short.cleanup();
    }
  }, 60_000);

  it("unmounts a mounted layer it is asked to remove", async () => {
    await apply("base", "", [file("a", "a")]);
    await driver.createReadWrite("c", "base", {});
    const dir = await driver.get("c", "");
    await driver.remove("c");
    expect(mountAt(dir)).toBeUndefined();
    expect(await driver.exists("c")).toBe(false);
    expect(fs.readFileSync(path.join(home, "base", "diff", "a"), "utf8")).toBe("a");
  });

  it("refuses to apply a diff into a mounted layer", async () => {
    await apply("base", "", [file("a", "a")]);
    await driver.create("c", "base", {});
    await driver.get("c", "");
    await expect(driver.applyDiff("c", "base", streamOf(await makeTar([file("x", "x")])))).rejects.toThrow(
      'Cannot apply a diff to layer "c": it is mounted',
    );
    await driver.put("c");
  });

  it("mounts a layer with children read-only, as overlay2 does", async () => {
    await apply("base", "", [file("a", "a")]);
    await apply("mid", "base", [file("b", "b")]);
    await driver.create("top", "mid", {});
    const dir = await driver.get("mid", "");
    expect(fs.readdirSync(dir).sort()).toEqual(["a", "b"]);
    expect(() => fs.writeFileSync(path.join(dir, "c"), "c")).toThrow("EROFS");
    await driver.put("mid");
  });
});

describe("initOverlay checks", () => {
  const init = (home: string, over: Partial<Sys> = {}, options: Record<string, string> = {}) =>
    initOverlay({ home, options, uidMaps: [], gidMaps: [], sys: { ...sys, ...over }, log: silentLogger });

  test.skipIf(!isRoot)("refuses a backing filesystem without d_type, saying how to fix it", async () => {
    const noDType = { readdirTypes: (p: string) => sys.readdirTypes(p).map((e) => ({ ...e, type: DT.UNKNOWN })) };
    const err = await init(path.join(root, "home"), noDType).catch((e) => e);
    expect(err).toBeInstanceOf(ErrNotSupported);
    expect(err.message).toBe(
      "overlay: the backing extfs filesystem is formatted without d_type support, which leads to incorrect behavior." +
        " Reformat the filesystem (or use tune2fs) with -O filetype flag to enable d_type support." +
        " Backing filesystems without d_type support are not supported.",
    );
  });

  test.skipIf(!isRoot)("is not supported where no overlay can be mounted", async () => {
    const noOverlay = {
      mount: () => {
        throw new ErrnoError("mount", 19, "x");
      },
      fsopen: () => {
        throw new ErrnoError("fsopen", 19, "overlay");
      },
    };
    const err = await init(path.join(root, "home"), noOverlay).catch((e) => e);
    expect(err).toBeInstanceOf(ErrNotSupported);
    expect(err.message).toContain("The overlay driver cannot run");
    expect(err.message).toContain("ENODEV");
  });

  test("rejects options it does not know, and bad values", async () => {
    await expect(init(path.join(root, "home"), {}, { bogus: "1" })).rejects.toThrow('Unknown option "strata.bogus" for driver overlay');
    await expect(init(path.join(root, "home"), {}, { mount_method: "fuse" })).rejects.toBeInstanceOf(InvalidRequestError);
  });

  test("takes native diff to be unsafe when overlay redirects directories or copies up metadata only", async () => {
    const params = path.join(root, "params");
    fs.mkdirSync(params);
    fs.writeFileSync(path.join(params, "redirect_dir"), "N\n");
    fs.writeFileSync(path.join(params, "metacopy"), "N\n");
    expect(await nativeDiffProblem(params)).toBeNull();
    fs.writeFileSync(path.join(params, "metacopy"), "Y\n");
    expect(await nativeDiffProblem(params)).toBe("overlay's metacopy is on");
    fs.writeFileSync(path.join(params, "redirect_dir"), "Y\n");
    expect(await nativeDiffProblem(params)).toBe("overlay's redirect_dir is on");
  });
});
