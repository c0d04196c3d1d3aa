/**
 * `strata check [--repair]` on btrfs and erofs stores damaged on purpose: each kind of damage is
 * found, a check alone changes nothing, a repair fixes exactly the safe ones, a second check finds
 * only what was left, nothing outside Home is touched, and the driver starts on the store after.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import "../src/drivers.ts";
import { checkStore, type CheckReport } from "../src/check/run.ts";
import { MARKER_FILE } from "../src/store/home.ts";
import { createSys } from "../src/sys/bun.ts";
import { shortName } from "../drivers/erofs/short-links.ts";
import { decodeSuperBlock } from "../src/erofs/format.ts";
import { btrfsTempRoot, removeBtrfsTree } from "./helpers/btrfs-root.ts";
import { file, makeTar, streamOf } from "./helpers/layer-tar.ts";
import { TEST_DRIVERS, named, newDriver } from "./helpers/drivers.ts";
import { mountsBelow, unmountBelow } from "./helpers/mounts.ts";
import { snapshot } from "./helpers/tree.ts";

const sys = createSys();
const btrfs = TEST_DRIVERS.find((d) => d.name === "btrfs")!;
const erofs = TEST_DRIVERS.find((d) => d.name === "erofs")!;

/** The findings as "severity kind relative-path" lines, sorted. */
function kinds(r: CheckReport): string[] {
  return r.findings.map((f) => `${f.severity} ${f.kind} ${path.relative(r.home, f.path)}`).sort();
}

/** What `--repair` did, as "kind: what" lines, sorted. */
function repairs(r: CheckReport): string[] {
  return r.findings.filter((f) => f.repaired !== undefined).map((f) => `${f.kind}: ${f.repaired}`).sort();
}

const check = (home: string, repair = false) => checkStore(home, { sys, repair, servers: [] });

describe("strata check: btrfs", () => {
  let root: string;
  let home: string;
  beforeEach(() => {
    if (btrfs.skip) return;
    root = fs.mkdtempSync(path.join(btrfsTempRoot(), "strata-check-"));
    home = path.join(root, "home");
  });
  afterEach(() => {
    if (btrfs.skip) return;
    unmountBelow(sys, root);
    removeBtrfsTree(root);
  });
  const it = (name: string, fn: () => Promise<void>) => test.skipIf(!!btrfs.skip)(named(name, btrfs.skip), fn, 60_000);
  const sub = (id: string) => path.join(home, "subvolumes", id);
  const isSubvol = (p: string) => sys.lstat(p).ino === 256n;

  it("a clean store has no problems", async () => {
    const d = await newDriver(btrfs, home);
    await d.create("a", "", {});
    await d.create("b", "a", {});
    await d.createReadWrite("c", "b", {});
    expect((await check(home)).findings).toEqual([]);
  });

  it("finds the damage, changes nothing, repairs only what is safe; a second check finds what was left", async () => {
    const d = await newDriver(btrfs, home);
    for (const [id, parent] of [["a", ""], ["b", "a"], ["lonely", ""], ["c", ""], ["p", ""], ["q", "p"], ["base", ""], ["kid", "base"]]) {
      await d.create(id, parent, {});
    }
    fs.writeFileSync(path.join(sub("lonely"), "data"), "keep");
    // A record whose layer is gone, a layer whose record is gone, a corrupt record.
    fs.writeFileSync(path.join(home, "meta/ghost"), JSON.stringify({ parent: "", readWrite: false, size: 0 }) + "\n");
    fs.rmSync(path.join(home, "meta/lonely"));
    fs.writeFileSync(path.join(home, "meta/c"), "{not json");
    // A parent destroyed behind the driver's back (its record too).
    sys.btrfsSetReadonly(sub("p"), false);
    sys.btrfsSubvolDestroy(path.join(home, "subvolumes"), "p");
    fs.rmSync(path.join(home, "meta/p"));
    // A plain directory where a subvolume belongs (with its record), and a file that is no layer.
    fs.mkdirSync(sub("plain"));
    fs.writeFileSync(path.join(sub("plain"), "precious"), "keep me");
    fs.writeFileSync(path.join(home, "meta/plain"), JSON.stringify({ parent: "", readWrite: false, size: 0 }) + "\n");
    fs.writeFileSync(sub("notes.txt"), "x");
    // A create cut short: a frozen temp subvolume with a nested one; a removal cut short (a plain dir); a name strata never makes.
    sys.btrfsSubvolCreate(path.join(home, "tmp"), "new-z-1-1");
    sys.btrfsSubvolCreate(path.join(home, "tmp/new-z-1-1"), "nested");
    fs.writeFileSync(path.join(home, "tmp/new-z-1-1/file"), "half");
    sys.btrfsSetReadonly(path.join(home, "tmp/new-z-1-1"), true);
    fs.mkdirSync(path.join(home, "tmp/rm-w-1-2/etc"), { recursive: true });
    fs.writeFileSync(path.join(home, "tmp/junk"), "mine");
    // An image layer with a child that was thawed (as a crash inside ApplyDiff leaves it).
    sys.btrfsSetReadonly(sub("base"), false);
    // A mount nobody owns inside a layer; and, outside Home, files that must not change.
    fs.mkdirSync(path.join(sub("c"), "mnt"));
    sys.mount("tmpfs", path.join(sub("c"), "mnt"), "tmpfs", 0, "size=1m");
    fs.mkdirSync(path.join(root, "outside/tmp/new-o-1-1"), { recursive: true });
    fs.writeFileSync(path.join(root, "outside/meta"), "x");
    const outside = snapshot(path.join(root, "outside"), sys);

    const before = snapshot(home, sys);
    const found = await check(home);
    expect(snapshot(home, sys)).toEqual(before);
    const left = [
      "note not-frozen subvolumes/base",
      "problem corrupt-record meta/c",
      "problem foreign-entry subvolumes/notes.txt",
      "problem foreign-entry tmp/junk",
      "problem foreign-mount subvolumes/c/mnt",
      "problem layer-without-record subvolumes/lonely",
      "problem missing-parent subvolumes/q",
      "problem not-a-subvolume subvolumes/plain",
    ];
    expect(kinds(found)).toEqual([...left, "problem record-without-layer meta/ghost", "problem temp-entry tmp/new-z-1-1", "problem temp-entry tmp/rm-w-1-2"].sort());
    expect(found).toMatchObject({ driver: "btrfs", problems: 10, repaired: 0, remaining: 10 });

    const repaired = await check(home, true);
    expect(repairs(repaired)).toEqual([
      "record-without-layer: removed the record (it named only the missing layer's parent)",
      "temp-entry: removed it",
      "temp-entry: removed it",
    ]);
    expect(repaired).toMatchObject({ problems: 10, repaired: 3, remaining: 7 });
    expect(fs.readdirSync(path.join(home, "tmp"))).toEqual(["junk"]);
    expect(fs.existsSync(path.join(home, "meta/ghost"))).toBe(false);
    expect(fs.readFileSync(path.join(sub("plain"), "precious"), "utf8")).toBe("keep me");
    expect(fs.readFileSync(path.join(sub("lonely"), "data"), "utf8")).toBe("keep");
    for (const id of ["a", "b", "lonely", "c", "q", "base", "kid"]) expect(isSubvol(sub(id))).toBe(true);
    expect(mountsBelow(home).map((m) => path.relative(fs.realpathSync(home), m.mountPoint))).toEqual(["subvolumes/c/mnt"]);
    expect(snapshot(path.join(root, "outside"), sys)).toEqual(outside);

    expect(kinds(await check(home, true))).toEqual(left);
    unmountBelow(sys, home);
    fs.rmSync(sub("notes.txt"));
    const restarted = await newDriver(btrfs, home);
    expect(await restarted.exists("ghost")).toBe(false);
    expect(await restarted.exists("q")).toBe(true);
    await restarted.create("d", "q", {});
  });

  it("makes a missing store directory again", async () => {
    await newDriver(btrfs, home);
    // A store made by the plugin has its marker (without one, a store missing a directory is not recognised as one).
    fs.writeFileSync(path.join(home, MARKER_FILE), JSON.stringify({ driver: "btrfs" }) + "\n");
    fs.rmdirSync(path.join(home, "tmp"));
    const found = await check(home, true);
    expect(kinds(found)).toEqual(["problem missing-store-dir tmp"]);
    expect(repairs(found)).toEqual(["missing-store-dir: made it (empty, mode 0700)"]);
    expect((await check(home)).findings).toEqual([]);
  });

  test("says plainly when Home is not on btrfs, and checks nothing else", async () => {
    const off = fs.mkdtempSync(path.join(os.tmpdir(), "strata-check-off-"));
    try {
      const offHome = path.join(off, "home");
      for (const dir of ["subvolumes/a", "tmp/new-x-1-1", "meta"]) fs.mkdirSync(path.join(offHome, dir), { recursive: true });
      fs.writeFileSync(path.join(offHome, MARKER_FILE), JSON.stringify({ driver: "btrfs" }) + "\n");
      const found = await check(offHome, true);
      expect(kinds(found)).toEqual(["problem not-btrfs "]);
      expect(found.findings[0].message).toMatch(/^Home is on \S+, not btrfs: the btrfs driver refuses it/);
      expect(found.remaining).toBe(1);
      expect(fs.existsSync(path.join(offHome, "tmp/new-x-1-1"))).toBe(true);
    } finally {
      fs.rmSync(off, { recursive: true, force: true });
    }
  });
});

describe("strata check: erofs", () => {
  let root: string;
  let home: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-check-"));
    home = path.join(root, "home");
  });
  afterEach(() => {
    unmountBelow(sys, root);
    fs.rmSync(root, { recursive: true, force: true });
  });
  const it = (name: string, fn: () => Promise<void>) => test.skipIf(!!erofs.skip)(named(name, erofs.skip), fn, 60_000);
  const at = (...parts: string[]) => path.join(home, ...parts);
  /** The temp dirs test mounts use, outside Home. */
  const testMountDirs = () => fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith("strata-check-image-"));
  /** Break the root inode's data layout (an unknown one): the superblock stays sound, the kernel refuses the mount. */
  const breakRootInode = (image: string) => {
    const b = fs.readFileSync(image);
    const sb = decodeSuperBlock(new Uint8Array(b.subarray(0, 4096)));
    if (typeof sb === "string") throw new Error(sb);
    const off = sb.metaBlkaddr * 4096 + sb.rootNid * 32;
    b.writeUInt16LE(b.readUInt16LE(off) | (7 << 1), off);
    fs.writeFileSync(image, b);
  };

  it("a clean store has no problems; a container's view left mounted is a note", async () => {
    const d = await newDriver(erofs, home);
    // As the plugin's Init writes it: without it, a store of erofs is laid out as overlay's could be.
    fs.writeFileSync(at(MARKER_FILE), JSON.stringify({ driver: "erofs" }) + "\n");
    await d.create("base", "", {});
    await d.applyDiff("base", "", streamOf(await makeTar([file("etc/os", "base")])));
    await d.createReadWrite("ctr", "base", {});
    expect((await check(home)).findings).toEqual([]);
    await d.get("ctr", "");
    expect(kinds(await check(home))).toEqual(["note layer-mounted ctr/merged"]);
  });

  it("finds the damage, changes nothing, repairs only what is safe; a second check finds what was left", async () => {
    const d = await newDriver(erofs, home);
    fs.writeFileSync(at(MARKER_FILE), JSON.stringify({ driver: "erofs" }) + "\n");
    const apply = async (id: string, parent: string, name: string) => {
      await d.create(id, parent, {});
      await d.applyDiff(id, parent, streamOf(await makeTar([file(name, `${id}'s`)])));
    };
    for (const id of ["base", "solo", "trunc", "bad", "norun", "notar", "shorttar", "sealed", "noimg", "gone"]) await apply(id, "", `${id}.txt`);
    await apply("mid", "base", "mid.txt");
    await d.createReadWrite("ctr", "mid", {});
    await d.createReadWrite("ctr2", "base", {});
    await d.create("orphan", "gone", {});
    await d.create("half", "", {});
    // A container's view left mounted (adopted at the next start, with the images below it), and an image mounted that no view uses.
    await d.get("ctr", "");
    await d.get("solo", "");
    // Images: cut short, no superblock, a root the kernel refuses; a tar gone, a tar cut short; an image gone (its tar stays).
    fs.truncateSync(at("trunc/layer.erofs"), 4096);
    fs.writeFileSync(at("bad/layer.erofs"), Buffer.alloc(8192));
    breakRootInode(at("norun/layer.erofs"));
    fs.rmSync(at("notar/layer.tar"));
    fs.truncateSync(at("shorttar/layer.tar"), 100);
    fs.rmSync(at("noimg/layer.erofs"));
    // A seal cut short (image in place, markers and upper dir still there), and an ApplyDiff cut short before its image.
    fs.writeFileSync(at("sealed/pending"), "");
    fs.mkdirSync(at("sealed/diff"));
    fs.mkdirSync(at("sealed/work"));
    fs.copyFileSync(at("base/layer.tar"), at("half/layer.tar"));
    fs.writeFileSync(at("half/size"), "1024");
    // A parent removed behind the driver's back; a container layer without its upper and work dirs.
    fs.rmSync(at("gone"), { recursive: true });
    fs.rmSync(at("ctr2/diff"), { recursive: true });
    fs.rmSync(at("ctr2/work"), { recursive: true });
    // Links: to a layer that is gone, under a name that is not its own, and a file that is no link.
    fs.symlinkSync("../ghost/image", at(".l", shortName("ghost", "image")));
    fs.symlinkSync("../base/image", at(".l/AAAAAAAAAAAAAAAAAAAAAAAAAA"));
    fs.writeFileSync(at(".l/readme"), "");
    // Temp entries: a create cut short, Init's probe cut short with its mount, a name strata never makes.
    fs.mkdirSync(at(".tmp/new-z-1-1/diff"), { recursive: true });
    fs.mkdirSync(at(".tmp/check-Ab12Cd/mnt"), { recursive: true });
    sys.mount("tmpfs", at(".tmp/check-Ab12Cd/mnt"), "tmpfs", 0, "size=1m");
    fs.writeFileSync(at(".tmp/mine"), "");
    // Directories named like layers that hold none; a mount left on one; a mount nobody owns; a file in Home.
    fs.mkdirSync(at("emptyone"));
    fs.mkdirSync(at("stray/diff"), { recursive: true });
    fs.writeFileSync(at("stray/diff/precious"), "keep me");
    fs.mkdirSync(at("stray/merged"));
    sys.mount("tmpfs", at("stray/merged"), "tmpfs", 0, "size=1m");
    fs.mkdirSync(at("base/sub"));
    sys.mount("tmpfs", at("base/sub"), "tmpfs", 0, "size=1m");
    fs.writeFileSync(at("notes.txt"), "x");
    // Outside Home: what must not change.
    fs.mkdirSync(path.join(root, "outside/.tmp/new-o-1-1"), { recursive: true });
    fs.symlinkSync("../gone/image", path.join(root, "outside/.l"));
    const outside = snapshot(path.join(root, "outside"), sys);
    const probes = testMountDirs().length;

    const mountsBefore = mountsBelow(root).map((m) => m.mountPoint).sort();
    const before = snapshot(home, sys);
    const found = await check(home);
    expect(snapshot(home, sys)).toEqual(before);
    expect(mountsBelow(root).map((m) => m.mountPoint).sort()).toEqual(mountsBefore);
    const left = [
      "note layer-mounted ctr/merged",
      "problem corrupt-image bad/layer.erofs",
      "problem foreign-entry .l/readme",
      "problem foreign-entry .tmp/mine",
      "problem foreign-entry notes.txt",
      "problem foreign-mount base/sub",
      "problem image-does-not-mount norun/layer.erofs",
      "problem incomplete-layer stray",
      "problem missing-diff ctr2/diff",
      "problem missing-image noimg/layer.erofs",
      "problem missing-parent orphan",
      "problem missing-tar notar/layer.tar",
      "problem missing-work ctr2/work",
      "problem truncated-image trunc/layer.erofs",
      "problem truncated-tar shorttar/layer.tar",
    ];
    const fixed = [
      "problem apply-leftover half",
      `problem dangling-link .l/${shortName("ghost", "image")}`,
      "problem empty-layer-dir emptyone",
      "problem stale-link .l/AAAAAAAAAAAAAAAAAAAAAAAAAA",
      "problem stale-mount solo/image",
      "problem stale-mount stray/merged",
      "problem temp-entry .tmp/check-Ab12Cd",
      "problem temp-entry .tmp/new-z-1-1",
      "problem unsealed-image sealed",
    ];
    expect(kinds(found)).toEqual([...left, ...fixed].sort());
    expect(found).toMatchObject({ driver: "erofs", problems: 23, repaired: 0, remaining: 23 });
    expect(found.findings.find((f) => f.kind === "missing-image")!.message).toContain("its layer.tar is left alone, and strata's next start deletes layer.tar");

    const repaired = await check(home, true);
    expect(repairs(repaired)).toEqual([
      "apply-leftover: removed layer.tar and size, as start-up does",
      "dangling-link: removed the link (strata makes it again when a mount needs it)",
      "empty-layer-dir: removed the empty directory",
      "stale-link: removed the link (strata makes it again when a mount needs it)",
      "stale-mount: unmounted it",
      "stale-mount: unmounted it",
      "temp-entry: removed it",
      "temp-entry: unmounted 1 mount and removed it",
      "unsealed-image: sealed it as start-up does (its image holds its files): removed the markers and upper dir",
    ]);
    expect(repaired).toMatchObject({ problems: 23, repaired: 9, remaining: 14 });
    expect(fs.readFileSync(at("stray/diff/precious"), "utf8")).toBe("keep me");
    expect(fs.readdirSync(at("sealed")).sort()).toEqual(["layer.erofs", "layer.tar", "parent", "size"]);
    expect(fs.readdirSync(at(".tmp"))).toEqual(["mine"]);
    expect(fs.existsSync(at("noimg/layer.tar"))).toBe(true);
    const real = fs.realpathSync(home);
    expect(mountsBelow(home).map((m) => path.relative(real, m.mountPoint)).sort()).toEqual(["base/image", "base/sub", "ctr/merged", "mid/image"]);
    expect(snapshot(path.join(root, "outside"), sys)).toEqual(outside);
    expect(testMountDirs().length).toBe(probes);

    expect(kinds(await check(home, true))).toEqual(left);
    // The driver starts on what is left, adopts the container's view, and the sealed layer is an image layer.
    fs.rmSync(at("notes.txt"));
    const restarted = await newDriver(erofs, home);
    expect(fs.readFileSync(path.join(await restarted.get("ctr", ""), "mid.txt"), "utf8")).toBe("mid's");
    expect(fs.readFileSync(path.join(await restarted.get("sealed", ""), "sealed.txt"), "utf8")).toBe("sealed's");
    await restarted.cleanup();
  });
});
