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
import { btrfsTempRoot, removeBtrfsTree } from "./helpers/btrfs-root.ts";
import { TEST_DRIVERS, named, newDriver } from "./helpers/drivers.ts";
import { mountsBelow, unmountBelow } from "./helpers/mounts.ts";
import { snapshot } from "./helpers/tree.ts";

const sys = createSys();
const btrfs = TEST_DRIVERS.find((d) => d.name === "btrfs")!;

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
