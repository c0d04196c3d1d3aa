/**
 * The store's own bookkeeping stays in Home whatever Home holds: symlinks to a sentinel tree
 * outside Home, planted in every internal directory, in place of those directories, as layer
 * directories and in a layer's own entries, survive start-up recovery, Cleanup, Remove, the diff
 * operations and Init with the sentinel byte-identical. And IDs of every valid length work
 * through every method (or are refused with InvalidRequestError before anything is created).
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import "../src/drivers.ts";
import { type Driver, initDriver } from "../src/core/driver.ts";
import { InvalidRequestError } from "../src/core/errors.ts";
import { silentLogger } from "../src/core/log.ts";
import { MARKER_FILE } from "../src/store/home.ts";
import { createSys } from "../src/sys/bun.ts";
import { findMkfs } from "../drivers/overlay/quota.ts";
import { bytesOf, file, makeTar, streamOf } from "./helpers/layer-tar.ts";
import { btrfsUnavailable, removeBtrfsTree } from "./helpers/btrfs-root.ts";
import { makeTempRoot, removeTempRoot } from "./helpers/drivers.ts";
import { unmountBelow } from "./helpers/mounts.ts";
import { TEST_DRIVERS } from "./helpers/drivers.ts";
import { shortName } from "../drivers/erofs/short-links.ts";
import { overlayUnavailable } from "./helpers/overlay-probe.ts";
import { snapshot } from "./helpers/tree.ts";

const sys = createSys();
const noOverlay = overlayUnavailable(sys);
const LINK_ID = "AAAAAAAAAAAAAAAAAAAAAAAAAA";

/** The entries the drivers keep inside one layer directory (overlay, erofs), or beside it. */
const LAYER_DIRS = ["diff/sub", "work/work", "merged/m", "image/i"];
const LAYER_FILES = ["link", "lower", "committed", "parent", "rw", "pending", "layer.erofs", "layer.tar", "size", ".tmp"];

interface Case {
  name: string;
  skip: string | null;
  /** Directories strata keeps under Home. */
  internal: string[];
  /** Entries named as strata names its own, planted as symlinks to the sentinel (path under Home → target under the sentinel). */
  lookalikes: Record<string, string>;
  /** A layer's own entries (relative to Home, `ID` replaced), what each is, and whether the layer is then refused. */
  layerEntries: Array<[string, "dir" | "file", boolean]>;
}

const CASES: Case[] = [
  {
    name: "vfs",
    skip: null,
    internal: ["tmp", "meta", "dir"],
    lookalikes: { "tmp/ready-ghost": "", "tmp/done-ghost-1-1": "", "meta/ghost": "file", "dir/ghost": "" },
    // A record that is not a file is ignored: the layer only loses its parent.
    layerEntries: [["dir/ID", "dir", true], ["meta/ID", "file", false], ["dir/base", "dir", false]],
  },
  {
    name: "overlay",
    skip: noOverlay,
    internal: [".l", ".tmp", ".quota"],
    lookalikes: { [`.l/${LINK_ID}`]: "", ".tmp/new-ghost-1-1": "", ".quota/ghost.img": "ghost.img", ghost: "", "base/.tmp": "" },
    layerEntries: [
      ["ID/diff", "dir", true], ["ID/work", "dir", true], ["ID/merged", "dir", true], ["ID/link", "file", true], ["ID/lower", "file", true], ["ID", "dir", true],
      // The parent of the container layer, an image layer.
      ["base", "dir", false],
    ],
  },
  {
    name: "erofs",
    skip: TEST_DRIVERS.find((d) => d.name === "erofs")!.skip,
    internal: [".tmp", ".l"],
    lookalikes: { ".tmp/new-ghost-1-1": "", ghost: "", "base/image": "", [`.l/${shortName("base", "image")}`]: "" },
    layerEntries: [
      ["ID/diff", "dir", true], ["ID/work", "dir", true], ["ID/merged", "dir", true], ["ID/parent", "file", true], ["ID/rw", "file", true], ["ID", "dir", true],
      ["base/layer.erofs", "file", true], ["base", "dir", false],
      // A mount point is made afresh at each mount: a planted link there is removed, never followed.
      ["base/image", "dir", false],
    ],
  },
  {
    name: "btrfs",
    skip: btrfsUnavailable,
    internal: ["tmp", "meta", "subvolumes"],
    lookalikes: { "tmp/new-ghost-1-1": "", "tmp/rm-ghost-1-1": "", "meta/ghost": "file", "subvolumes/ghost": "" },
    layerEntries: [["subvolumes/ID", "dir", true], ["meta/ID", "file", false], ["subvolumes/base", "dir", false]],
  },
];

/** Delete a tree of the store (btrfs: its subvolumes, frozen ones included, through the ioctls). */
const removeStoreTree = (c: Case, p: string) => (c.name === "btrfs" ? removeBtrfsTree(p) : fs.rmSync(p, { recursive: true, force: true }));

for (const c of CASES) {
  const it = (name: string, fn: () => Promise<void>, timeout = 60_000) => test.skipIf(c.skip !== null)(`${name}${c.skip ? ` (skipped: ${c.skip})` : ""}`, fn, timeout);

  describe(`confinement (${c.name})`, () => {
    let root: string;
    let home: string;
    let sentinel: string;
    let driver: Driver | undefined;
    const init = async () => (driver = await initDriver(c.name, { home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger }));
    const sentinelTree = () => snapshot(sentinel, sys, { dirMtimes: true });

    beforeEach(async () => {
      if (c.skip) return;
      root = makeTempRoot(c.name, `strata-confine-${c.name}-`);
      home = path.join(root, "home");
      sentinel = path.join(root, "sentinel");
      // Looks like a layer and holds what strata would delete or write: nothing of it may change.
      for (const d of ["diff/etc", "work", "merged", "sub/deep"]) fs.mkdirSync(path.join(sentinel, d), { recursive: true });
      for (const f of ["file", "link", "lower", "committed", "ghost.img", "diff/etc/os", "sub/deep/f"]) fs.writeFileSync(path.join(sentinel, f), f === "link" ? LINK_ID : "keep");
      // A layer directory replaced by a link to sentinel/diff finds there every name a driver keeps in a layer.
      for (const d of LAYER_DIRS) fs.mkdirSync(path.join(sentinel, "diff", d), { recursive: true });
      for (const f of LAYER_FILES) fs.writeFileSync(path.join(sentinel, "diff", f), f === "link" ? LINK_ID : "keep");
      await init();
      await driver!.create("base", "", {});
      await driver!.applyDiff("base", "", streamOf(await makeTar([file("etc/os", "base\n"), file("etc/keep", "k")])));
      await driver!.createReadWrite("rw", "base", {});
      await driver!.applyDiff("rw", "base", streamOf(await makeTar([file("etc/os", "child\n"), file("new", "n")])));
    });
    afterEach(async () => {
      if (c.skip) return;
      await driver?.cleanup().catch(() => {});
      driver = undefined;
      unmountBelow(sys, root);
      removeTempRoot(root);
    });

    /** Everything a user of the store does, each allowed to fail but none to reach the sentinel. */
    const exercise = async (d: Driver) => {
      const calls: Array<() => Promise<unknown>> = [
        () => d.changes("rw", ""), () => d.changes("rw", "base"), () => d.diffSize("rw", ""), () => d.diffSize("rw", "base"),
        async () => await bytesOf(await d.diff("rw", "")), async () => await bytesOf(await d.diff("rw", "base")),
        async () => (await d.get("rw", ""), await d.put("rw")), () => d.getMetadata("rw"), () => d.status(),
        async () => d.applyDiff("rw", "base", streamOf(await makeTar([file("later", "l")]))),
        () => d.exists("ghost"), () => d.remove("ghost"), () => d.cleanup(),
        () => d.remove("rw"), () => d.remove("base"), () => d.create("again", "", {}), () => d.remove("again"),
      ];
      for (const call of calls) await call().catch(() => {});
    };

    it("symlinks planted in every internal directory: recovery, Cleanup, Remove and the diffs leave the sentinel alone", async () => {
      await driver!.cleanup();
      for (const dir of [...c.internal, "", ...(c.name === "overlay" || c.name === "erofs" ? ["base", "rw"] : [])]) {
        fs.symlinkSync(sentinel, path.join(home, dir, "evil-dir"));
        fs.symlinkSync(path.join(sentinel, "file"), path.join(home, dir, "evil-file"));
      }
      for (const [at, target] of Object.entries(c.lookalikes)) fs.symlinkSync(path.join(sentinel, target), path.join(home, at));
      if (c.name === "overlay") fs.symlinkSync("../ghost/diff", path.join(home, ".l", "B".repeat(26)));
      const before = sentinelTree();

      const d = await init();
      expect(await d.exists("ghost")).toBe(false);
      await expect(d.get("ghost", "")).rejects.toThrow('it does not exist');
      expect(await d.changes("rw", "base")).toEqual([{ Path: "/etc", Kind: 0 }, { Path: "/etc/os", Kind: 0 }, { Path: "/new", Kind: 1 }]);
      await exercise(d);
      await d.cleanup();
      await init();
      expect(sentinelTree()).toEqual(before);
    });

    for (const dir of [...CASES.find((x) => x.name === c.name)!.internal]) {
      it(`"${dir}" replaced by a symlink: Init is refused naming it, and nothing is touched`, async () => {
        await driver!.cleanup();
        driver = undefined;
        fs.cpSync(path.join(home, dir), path.join(sentinel, "copy"), { recursive: true });
        removeStoreTree(c, path.join(home, dir));
        fs.symlinkSync(path.join(sentinel, "copy"), path.join(home, dir));
        const before = sentinelTree();
        const homeBefore = snapshot(home, sys, { dirMtimes: true });
        const err = await init().catch((e) => e);
        expect(err).toBeInstanceOf(InvalidRequestError);
        expect(err.message).toBe(`Cannot use "${home}" as Home: "${path.join(home, dir)}" is a symbolic link, where the store keeps its own directory`);
        expect(sentinelTree()).toEqual(before);
        expect(snapshot(home, sys, { dirMtimes: true })).toEqual(homeBefore);
      });
    }

    for (const [entry, kind, refused] of c.layerEntries) {
      it(`a layer's "${entry}" replaced by a symlink is reported and never followed`, async () => {
        // A real mount point first, so the merged case covers a layer that had been mounted.
        await driver!.get("rw", "");
        await driver!.put("rw");
        await driver!.cleanup();
        const at = path.join(home, entry.replace("ID", "rw"));
        removeStoreTree(c, at);
        fs.symlinkSync(path.join(sentinel, kind === "dir" ? "diff" : "link"), at);
        const before = sentinelTree();
        const d = await init();
        // Either the layer is gone (its place is no directory) or it is damaged: the diffs refuse it.
        if (refused && (await d.exists("rw"))) await expect(d.changes("rw", "base")).rejects.toThrow(/^Refusing to use ".*": it is a symbolic link where strata keeps its own/);
        if (refused) await expect(d.get("rw", "")).rejects.toThrow(/Refusing to use|does not exist/);
        await exercise(d);
        await init();
        expect(sentinelTree()).toEqual(before);
      });
    }
  });

  describe(`layer IDs of every length (${c.name})`, () => {
    let root: string;
    let driver: Driver;
    beforeEach(async () => {
      if (c.skip) return;
      root = makeTempRoot(c.name, `strata-idlen-${c.name}-`);
      driver = await initDriver(c.name, { home: path.join(root, "home"), options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger });
    });
    afterEach(async () => {
      if (c.skip) return;
      await driver.cleanup();
      unmountBelow(sys, root);
      removeTempRoot(root);
    });

    it("200 to 255 characters work through every method", async () => {
      for (let n = 200; n <= 255; n++) {
        const base = "b".repeat(n);
        const rw = `r${"w".repeat(n - 1)}`;
        await driver.create(base, "", {});
        expect(await driver.applyDiff(base, "", streamOf(await makeTar([file("f", "x")])))).toBe(1);
        await driver.createReadWrite(rw, base, {});
        const dir = await driver.get(rw, "");
        fs.writeFileSync(path.join(dir, "g"), "yy");
        await driver.put(rw);
        expect(await driver.exists(rw)).toBe(true);
        expect(Object.keys(await driver.getMetadata(rw)).length).toBeGreaterThan(0);
        expect(await driver.changes(rw, "")).toEqual([{ Path: "/g", Kind: 1 }]);
        expect(await driver.diffSize(rw, base)).toBe(2);
        expect((await bytesOf(await driver.diff(rw, ""))).byteLength).toBeGreaterThan(0);
        expect(await driver.applyDiff(rw, base, streamOf(await makeTar([file("h", "zzz")])))).toBe(3);
        await expect(driver.remove(base)).rejects.toThrow("built on it");
        await driver.remove(rw);
        await driver.remove(base);
        expect(await driver.exists(base)).toBe(false);
      }
      const home = path.join(root, "home");
      const tmp = c.name === "overlay" || c.name === "erofs" ? ".tmp" : "tmp";
      expect(fs.readdirSync(path.join(home, tmp))).toEqual([]);
      if (c.name === "erofs") expect(fs.readdirSync(home).filter((n) => !n.startsWith("."))).toEqual([]);
      else expect(fs.readdirSync(path.join(home, { vfs: "dir", btrfs: "subvolumes" }[c.name] ?? ".l"))).toEqual([]);
    }, 120_000);

    if (c.name === "overlay") {
      test.skipIf(c.skip !== null || findMkfs() === null)(`a size limit with an ID too long for its image is refused before anything is created${c.skip ? ` (skipped: ${c.skip})` : ""}`, async () => {
        const home = path.join(root, "home");
        const before = snapshot(home, sys, { dirMtimes: true });
        const id = "s".repeat(252);
        const err = await driver.createReadWrite(id, "", { storageOpt: { size: "32M" } }).catch((e) => e);
        expect(err).toBeInstanceOf(InvalidRequestError);
        expect(err.message).toBe(`Cannot create layer "${id}" with a size limit: its ID is longer than 251 characters`);
        expect(snapshot(home, sys, { dirMtimes: true })).toEqual(before);
        const fits = "s".repeat(251);
        await driver.createReadWrite(fits, "", { storageOpt: { size: "32M" } });
        expect(await driver.exists(fits)).toBe(true);
        await driver.remove(fits);
        expect(fs.readdirSync(path.join(home, ".quota"))).toEqual([]);
      });
    }
  });
}

describe("the store marker", () => {
  let root: string;
  beforeEach(() => void (root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-marker-"))));
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));
  const config = (home: string) => ({ home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger });

  test("is written at the first Init, and a store of the previous version (no marker) is recognised by its layout", async () => {
    const home = path.join(root, "home");
    await (await initDriver("vfs", config(home))).cleanup();
    expect(JSON.parse(fs.readFileSync(path.join(home, MARKER_FILE), "utf8"))).toEqual({ driver: "vfs" });
    fs.rmSync(path.join(home, MARKER_FILE));
    const driver = await initDriver("auto", config(home));
    expect(driver.name).toBe("vfs");
    expect(fs.existsSync(path.join(home, MARKER_FILE))).toBe(true);
  });

  test.skipIf(noOverlay !== null)(`a store of one driver is refused to the other${noOverlay ? ` (skipped: ${noOverlay})` : ""}`, async () => {
    const home = path.join(root, "home");
    await (await initDriver("vfs", config(home))).cleanup();
    const before = snapshot(home, sys, { dirMtimes: true });
    await expect(initDriver("overlay", config(home))).rejects.toThrow(`Cannot use "${home}" as Home: it is a strata store of the vfs driver, not overlay`);
    fs.rmSync(path.join(home, MARKER_FILE));
    const unmarked = snapshot(home, sys, { dirMtimes: true });
    await expect(initDriver("overlay", config(home))).rejects.toThrow(`Cannot use "${home}" as Home: it is not empty and is not a strata store of the overlay driver`);
    expect(snapshot(home, sys, { dirMtimes: true })).toEqual(unmarked);
    expect(Object.keys(before).length).toBe(Object.keys(unmarked).length + 1);
  });
});

describe("vfs recovery of an earlier version's finished apply", () => {
  test("tmp/ready-<id> of a layer missing from dir/ is swapped in; one whose layer is there is deleted", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-ready-"));
    try {
      const home = path.join(root, "home");
      const open = () => initDriver("vfs", { home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger });
      const d = await open();
      for (const id of ["gone", "kept"]) {
        await d.create(id, "", {});
        await d.applyDiff(id, "", streamOf(await makeTar([file("f", id)])));
      }
      fs.renameSync(path.join(home, "dir", "gone"), path.join(home, "tmp", "ready-gone"));
      fs.cpSync(path.join(home, "dir", "kept"), path.join(home, "tmp", "ready-kept"), { recursive: true });
      fs.writeFileSync(path.join(home, "tmp", "ready-kept", "f"), "stale");
      const again = await open();
      expect(fs.readFileSync(path.join(await again.get("gone", ""), "f"), "utf8")).toBe("gone");
      expect(fs.readFileSync(path.join(await again.get("kept", ""), "f"), "utf8")).toBe("kept");
      expect(fs.readdirSync(path.join(home, "tmp"))).toEqual([]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
