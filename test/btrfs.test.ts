/**
 * The btrfs driver: the conformance suite on this process's btrfs image, then what is btrfs's own
 * (subvolumes and snapshots, freezing, nested subvolumes, qgroup size limits, Status, refusal off
 * btrfs, where `auto` puts it).
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBtrfs } from "../drivers/btrfs/driver.ts";
import "../src/drivers.ts";
import { type Driver, initDriver } from "../src/core/driver.ts";
import { ErrPrerequisites, InvalidRequestError } from "../src/core/errors.ts";
import { silentLogger } from "../src/core/log.ts";
import { openSnapshotter } from "../src/snapshotter/command.ts";
import { openDatabase } from "../src/store/sqlite/bun.ts";
import { createSys } from "../src/sys/bun.ts";
import { runDriverSuite } from "./driver-suite.ts";
import { type BtrfsMount, btrfsProgs, btrfsTempRoot, btrfsUnavailable, mountBtrfs, removeBtrfsTree } from "./helpers/btrfs-root.ts";
import { file, makeTar, streamOf } from "./helpers/layer-tar.ts";
import { overlayUnavailable } from "./helpers/overlay-probe.ts";

const sys = createSys();
const skip = btrfsUnavailable ?? undefined;
const init = (home: string, options: Record<string, string> = {}) =>
  initBtrfs({ home, options, uidMaps: [], gidMaps: [], sys, log: silentLogger });

runDriverSuite({ name: "btrfs", sys, newDriver: (home) => init(home), skip, tmpRoot: btrfsTempRoot, removeRoot: removeBtrfsTree });

const named = (name: string) => (skip ? `${name} (skipped: ${skip})` : name);

describe(named("btrfs layers"), () => {
  let root: string;
  let home: string;
  let driver: Driver;
  beforeEach(async () => {
    if (skip) return;
    root = fs.mkdtempSync(path.join(btrfsTempRoot(), "strata-btrfs-"));
    home = path.join(root, "home");
    driver = await init(home);
  });
  afterEach(() => {
    if (!skip) removeBtrfsTree(root);
  });
  const it = (name: string, fn: () => Promise<void>) => test.skipIf(!!skip)(name, fn, 30_000);
  const sub = (id: string) => path.join(home, "subvolumes", id);
  const isSubvol = (p: string) => sys.lstat(p).ino === 256n;

  it("makes every layer a subvolume and a child a snapshot sharing its parent's files", async () => {
    await driver.create("base", "", {});
    await driver.applyDiff("base", "", streamOf(await makeTar([file("etc/big", "x".repeat(1 << 20))])));
    await driver.create("img", "base", {});
    await driver.createReadWrite("ctr", "img", {});
    for (const id of ["base", "img", "ctr"]) expect(isSubvol(sub(id))).toBe(true);
    expect(fs.readFileSync(path.join(sub("ctr"), "etc/big"), "utf8").length).toBe(1 << 20);
    const listed = btrfsProgs(["subvolume", "show", sub("img")]);
    expect(listed).toMatch(/Parent UUID:\s+[0-9a-f-]{36}/);
    expect(listed).toContain(btrfsProgs(["subvolume", "show", sub("base")]).match(/^\s*UUID:\s+(\S+)/m)![1]);
  });

  it("freezes an image layer once a child is built on it, never a container layer; commit freezes", async () => {
    await driver.create("base", "", {});
    expect(sys.btrfsIsReadonly(sub("base"))).toBe(false);
    await driver.createReadWrite("init", "base", {});
    expect(sys.btrfsIsReadonly(sub("base"))).toBe(true);
    await driver.createReadWrite("ctr", "init", {});
    expect(sys.btrfsIsReadonly(sub("init"))).toBe(false);
    expect(sys.btrfsIsReadonly(sub("ctr"))).toBe(false);
    expect(() => fs.writeFileSync(path.join(sub("base"), "f"), "x")).toThrow(/EROFS|read-only/);
    await driver.commit("ctr");
    expect(sys.btrfsIsReadonly(sub("ctr"))).toBe(true);
  });

  it("applies a diff to a frozen layer through a snapshot: the layer stays frozen, its children keep what they saw", async () => {
    await driver.create("base", "", {});
    await driver.applyDiff("base", "", streamOf(await makeTar([file("a", "one")])));
    await driver.create("child", "base", {});
    await driver.applyDiff("base", "", streamOf(await makeTar([file("a", "two")])));
    expect(fs.readFileSync(path.join(sub("base"), "a"), "utf8")).toBe("two");
    expect(fs.readFileSync(path.join(sub("child"), "a"), "utf8")).toBe("one");
    expect(sys.btrfsIsReadonly(sub("base"))).toBe(true);
    expect(fs.readdirSync(path.join(home, "tmp"))).toEqual([]);
  });

  it("removes a layer with subvolumes inside it, read-only ones and ones nested deeper included", async () => {
    await driver.createReadWrite("ctr", "", {});
    sys.btrfsSubvolCreate(sub("ctr"), "inner");
    fs.mkdirSync(path.join(sub("ctr"), "inner", "deep", "er"), { recursive: true });
    sys.btrfsSubvolCreate(path.join(sub("ctr"), "inner", "deep", "er"), "innermost");
    fs.writeFileSync(path.join(sub("ctr"), "inner", "deep", "er", "innermost", "f"), "x");
    sys.btrfsSnapshot(path.join(sub("ctr"), "inner"), sub("ctr"), "frozen", true);
    await driver.remove("ctr");
    expect(fs.existsSync(sub("ctr"))).toBe(false);
    expect(fs.readdirSync(path.join(home, "tmp"))).toEqual([]);
    expect(btrfsProgs(["subvolume", "list", root]).trim()).toBe("");
  });

  it("removes a layer whose subvolume sits 100 directories deep, and never reaches through a symlink to another layer", async () => {
    await driver.create("other", "", {});
    await driver.createReadWrite("ctr", "", {});
    let deep = sub("ctr");
    for (let i = 0; i < 100; i++) deep = path.join(deep, `d${i}`);
    fs.mkdirSync(deep, { recursive: true });
    sys.btrfsSubvolCreate(deep, "bottom");
    sys.btrfsSubvolCreate(path.join(deep, "bottom"), "inside");
    sys.btrfsSetReadonly(path.join(deep, "bottom"), true);
    fs.symlinkSync(sub("other"), path.join(sub("ctr"), "to-other"));
    fs.symlinkSync(path.join(root), path.join(deep, "to-root"));
    await driver.remove("ctr");
    expect(fs.existsSync(sub("ctr"))).toBe(false);
    expect(fs.readdirSync(path.join(home, "tmp"))).toEqual([]);
    expect(isSubvol(sub("other"))).toBe(true);
    expect(btrfsProgs(["subvolume", "list", "-o", root]).trim().split("\n")).toHaveLength(1);
  });

  it("destroys what a crash left in tmp/ at the next start, frozen subvolumes included", async () => {
    sys.btrfsSubvolCreate(path.join(home, "tmp"), "new-x-1-1");
    sys.btrfsSubvolCreate(path.join(home, "tmp", "new-x-1-1"), "nested");
    sys.btrfsSetReadonly(path.join(home, "tmp", "new-x-1-1"), true);
    fs.mkdirSync(path.join(home, "tmp", "plain"));
    await init(home);
    expect(fs.readdirSync(path.join(home, "tmp"))).toEqual([]);
  });

  it("refuses a size limit where quotas are off, naming the fix", async () => {
    const err = await driver.createReadWrite("ctr", "", { storageOpt: { size: "64M" } }).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect(err.message).toContain('quotas are not enabled on this btrfs filesystem (enable them with "btrfs quota enable');
    expect(await driver.exists("ctr")).toBe(false);
    const initErr = await init(path.join(root, "home2"), { size: "64M" }).catch((e) => e);
    expect(initErr).toBeInstanceOf(InvalidRequestError);
    expect(initErr.message).toContain("Invalid option strata.size=64M: quotas are not enabled");
  });

  it("shows btrfs and quota state in Status", async () => {
    await driver.create("a", "", {});
    const status = Object.fromEntries(await driver.status());
    expect(status["Backing Filesystem"]).toBe("btrfs");
    expect(status["Btrfs Quotas"]).toBe("disabled");
    expect(btrfsProgs(["filesystem", "show", btrfsTempRoot()])).toContain(status["Btrfs Filesystem UUID"]);
    expect(status.Layers).toBe("1");
  });

  it("leaves a symlink at a layer's place alone", async () => {
    const outside = path.join(root, "outside");
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, "keep"), "x");
    fs.symlinkSync(outside, sub("evil"));
    expect(await driver.exists("evil")).toBe(false);
    await driver.remove("evil");
    expect(fs.readlinkSync(sub("evil"))).toBe(outside);
    expect(fs.readFileSync(path.join(outside, "keep"), "utf8")).toBe("x");
  });
});

describe(named("btrfs size limits (qgroups)"), () => {
  let m: BtrfsMount;
  let home: string;
  beforeAll(() => {
    if (!skip) m = mountBtrfs({ quota: true, bytes: 1 << 30 });
  });
  afterAll(() => m?.close());
  beforeEach(() => {
    if (!skip) home = fs.mkdtempSync(path.join(m.dir, "home-"));
  });
  const it = (name: string, fn: () => Promise<void>) => test.skipIf(!!skip)(name, fn, 30_000);
  const write = (p: string, mib: number) => {
    const fd = fs.openSync(p, "w");
    try {
      const chunk = Buffer.alloc(1 << 20, 7);
      for (let i = 0; i < mib; i++) fs.writeSync(fd, chunk), fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  };

  it("limits a container layer's referenced bytes: writes past the size fail with EDQUOT", async () => {
    const driver = await init(home);
    await driver.create("base", "", {});
    await driver.createReadWrite("ctr", "base", { storageOpt: { size: "32M" } });
    const dir = await driver.get("ctr", "");
    expect(sys.btrfsQgroup(m.dir, sys.btrfsSubvolId(dir))!.maxReferenced).toBe(32n << 20n);
    write(path.join(dir, "fits"), 8);
    expect(() => write(path.join(dir, "too-big"), 64)).toThrow(/EDQUOT|quota/);
    expect(Object.fromEntries(await driver.status())["Btrfs Quotas"]).toBe("enabled");
    await driver.remove("ctr");
    await driver.remove("base");
  });

  it("gives every container layer strata.size's limit, none to image layers; size on an image layer is refused", async () => {
    const driver = await init(home, { size: "48M" });
    await driver.create("img", "", {});
    await driver.createReadWrite("ctr", "img", {});
    expect(sys.btrfsQgroup(m.dir, sys.btrfsSubvolId(path.join(home, "subvolumes", "img")))!.maxReferenced).toBeNull();
    expect(sys.btrfsQgroup(m.dir, sys.btrfsSubvolId(path.join(home, "subvolumes", "ctr")))!.maxReferenced).toBe(48n << 20n);
    const err = await driver.create("img2", "", { storageOpt: { size: "48M" } }).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect(err.message).toContain("only supported for read-write layers");
    const small = await driver.createReadWrite("tiny", "", { storageOpt: { size: "1M" } }).catch((e) => e);
    expect(small.message).toContain("below the minimum");
  });

  it("serves size limits through the snapshotter: --size for containers, the label for one, none for unpack targets", async () => {
    const service = await openSnapshotter({ driver: "btrfs", root: home, socket: path.join(home, "s"), log: silentLogger, sys, openDatabase, size: "40M" });
    try {
      const limitOf = (mounts: Array<{ source: string }>) => sys.btrfsQgroup(m.dir, sys.btrfsSubvolId(mounts[0]!.source))!.maxReferenced;
      const base = await service.prepare("default/1/extract-1 sha256:aa", "", { labels: {} });
      expect(limitOf(base)).toBeNull();
      await service.commit("layer", "default/1/extract-1 sha256:aa", { labels: {} });
      expect(limitOf(await service.prepare("ctr", "layer", { labels: {} }))).toBe(40n << 20n);
      expect(limitOf(await service.prepare("big", "layer", { labels: { "containerd.io/snapshot/strata.size": "64M" } }))).toBe(64n << 20n);
      expect(sys.btrfsIsReadonly(path.join(home, "btrfs", "subvolumes", "1"))).toBe(true);
    } finally {
      await service.close();
      // bun:sqlite closes the database files once its cached statements are collected: collect
      // them now, or their fds close during a later file's count of open fds.
      Bun.gc(true);
    }
  });

  it("keeps the limit through an ApplyDiff (a new snapshot takes the layer's place)", async () => {
    const driver = await init(home);
    await driver.createReadWrite("ctr", "", { storageOpt: { size: "32M" } });
    await driver.applyDiff("ctr", "", streamOf(await makeTar([file("a", "x")])));
    const dir = path.join(home, "subvolumes", "ctr");
    expect(sys.btrfsQgroup(m.dir, sys.btrfsSubvolId(dir))!.maxReferenced).toBe(32n << 20n);
    const again = await init(home);
    expect(await again.exists("ctr")).toBe(true);
  });
});

describe(named("btrfs Init"), () => {
  test("answers ErrPrerequisites where Home is not on btrfs", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-btrfs-off-"));
    try {
      const err = await init(path.join(root, "home")).catch((e) => e);
      expect(err).toBeInstanceOf(ErrPrerequisites);
      expect(err.message).toContain("not btrfs");
      expect(fs.existsSync(path.join(root, "home"))).toBe(false);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test.skipIf(!!skip)("is what --driver btrfs gives; auto keeps overlay first on btrfs, as moby's priority list does", async () => {
    const root = fs.mkdtempSync(path.join(btrfsTempRoot(), "strata-btrfs-auto-"));
    try {
      const config = { options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger };
      expect((await initDriver("btrfs", { ...config, home: path.join(root, "a") })).name).toBe("btrfs");
      const auto = await initDriver("auto", { ...config, home: path.join(root, "b") });
      expect(auto.name).toBe(overlayUnavailable(sys) === null ? "overlay" : "btrfs");
      // The store now decides: auto on Home a stays btrfs.
      expect((await initDriver("auto", { ...config, home: path.join(root, "a") })).name).toBe("btrfs");
    } finally {
      removeBtrfsTree(root);
    }
  });
});
