/**
 * `strata check [--repair]` against stores damaged on purpose: each kind of damage is found, a check
 * alone changes nothing, a repair fixes exactly the safe ones and says so, what is left is reported
 * again, and the driver then starts on the store. A store a live strata serves is refused.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import "../src/drivers.ts";
import { checkStore, formatReport, type CheckReport } from "../src/check/run.ts";
import { strataCommand } from "../src/check/live.ts";
import { LINK_DIR } from "../drivers/overlay/layout.ts";
import { createSys } from "../src/sys/bun.ts";
import { MS } from "../src/sys/types.ts";
import { TEST_DRIVERS, named, newDriver, sizeLimitsUnavailable } from "./helpers/drivers.ts";
import { mountsBelow, unmountBelow } from "./helpers/mounts.ts";
import { PluginChild } from "./helpers/plugin-child.ts";
import { SnapClient } from "./helpers/snapshot-client.ts";
import { snapshot } from "./helpers/tree.ts";
import { openDatabase } from "../src/store/sqlite/bun.ts";

const sys = createSys();
const BUN = path.resolve("node_modules/.bin/bun");
const vfs = TEST_DRIVERS.find((d) => d.name === "vfs")!;
const overlay = TEST_DRIVERS.find((d) => d.name === "overlay")!;

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

/** The findings as "severity kind relative-path" lines, sorted. */
function kinds(r: CheckReport): string[] {
  return r.findings.map((f) => `${f.severity} ${f.kind} ${path.relative(r.home, f.path)}`).sort();
}

const run = (argv: string[]) => {
  const p = Bun.spawnSync([BUN, "src/main.bun.ts", ...argv], { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
};

describe("strata check: vfs", () => {
  test("a clean store has no problems (exit 0)", async () => {
    const d = await newDriver(vfs, home);
    await d.create("a", "", {});
    await d.create("b", "a", {});
    expect((await checkStore(home, { sys, repair: false, servers: [] })).findings).toEqual([]);
    const r = run(["check", home]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(`strata check ${home} (vfs store)\nok: no problems\n`);
  });

  test("finds the damage, changes nothing, repairs only what is safe and the driver starts after", async () => {
    const d = await newDriver(vfs, home);
    for (const [id, parent] of [["a", ""], ["b", "a"], ["c", "b"], ["y", ""], ["p", ""], ["q", "p"]]) await d.create(id, parent, {});
    fs.writeFileSync(path.join(home, "dir/y/data"), "applied");
    // A record whose layer is gone (a crash inside Remove).
    fs.writeFileSync(path.join(home, "meta/ghost"), JSON.stringify({ parent: "" }) + "\n");
    // A create cut short, and a name strata never makes.
    fs.mkdirSync(path.join(home, "tmp/new-x-1-1/etc"), { recursive: true });
    fs.writeFileSync(path.join(home, "tmp/junk"), "mine");
    // An ApplyDiff of "y" that finished, cut short after the old tree went aside.
    fs.mkdirSync(path.join(home, "tmp/done-y-1-2"));
    fs.renameSync(path.join(home, "dir/y"), path.join(home, "tmp/done-y-1-2/y"));
    // A parent removed behind the driver's back (its record too).
    fs.rmSync(path.join(home, "dir/p"), { recursive: true });
    fs.rmSync(path.join(home, "meta/p"));
    // Something that is no layer, and a corrupt record.
    fs.writeFileSync(path.join(home, "dir/notes.txt"), "x");
    fs.writeFileSync(path.join(home, "meta/c"), "{not json");

    const before = snapshot(home, sys);
    const found = await checkStore(home, { sys, repair: false, servers: [] });
    expect(snapshot(home, sys)).toEqual(before);
    expect(kinds(found)).toEqual([
      "problem corrupt-record meta/c",
      "problem foreign-entry dir/notes.txt",
      "problem foreign-entry tmp/junk",
      "problem missing-parent dir/q",
      "problem record-without-layer meta/ghost",
      "problem temp-entry tmp/new-x-1-1",
      "problem unfinished-apply tmp/done-y-1-2/y",
    ]);
    expect(found).toMatchObject({ driver: "vfs", problems: 7, repaired: 0, remaining: 7 });
    const text = formatReport(found, false);
    expect(text).toContain("problem  record-without-layer   meta/ghost: the record of layer \"ghost\", which does not exist [--repair fixes it]\n");
    expect(text).toContain("problem  foreign-entry          tmp/junk: an entry of tmp/ strata did not name: left alone [left for you]\n");
    expect(text.trimEnd().split("\n").at(-1)).toBe("7 problems (3 repairable with --repair)");

    const cli = run(["check", home, "--json"]);
    expect(cli.code).toBe(1);
    expect(JSON.parse(cli.out)).toMatchObject({ home, driver: "vfs", problems: 7, remaining: 7 });

    const repaired = await checkStore(home, { sys, repair: true, servers: [] });
    expect(repaired.findings.filter((f) => f.repaired).map((f) => `${f.kind}: ${f.repaired}`).sort()).toEqual([
      "record-without-layer: removed the record (it named only the missing layer's parent)",
      "temp-entry: removed it",
      "unfinished-apply: moved it into place as dir/y",
    ]);
    expect(repaired).toMatchObject({ problems: 7, repaired: 3, remaining: 4 });
    expect(fs.readFileSync(path.join(home, "dir/y/data"), "utf8")).toBe("applied");
    expect(fs.readFileSync(path.join(home, "tmp/junk"), "utf8")).toBe("mine");
    expect(fs.existsSync(path.join(home, "dir/notes.txt"))).toBe(true);
    expect(fs.existsSync(path.join(home, "dir/q"))).toBe(true);

    const again = run(["check", home, "--repair"]);
    expect(again.code).toBe(1);
    expect(again.out.trimEnd().split("\n").at(-1)).toBe("4 problems (0 repaired, 4 left)");
    expect(kinds(await checkStore(home, { sys, repair: false, servers: [] }))).toEqual([
      "problem corrupt-record meta/c",
      "problem foreign-entry dir/notes.txt",
      "problem foreign-entry tmp/junk",
      "problem missing-parent dir/q",
    ]);
    fs.rmSync(path.join(home, "dir/notes.txt"));
    const restarted = await newDriver(vfs, home);
    expect(await restarted.exists("y")).toBe(true);
    expect(await restarted.exists("ghost")).toBe(false);
  });

  test("refuses what is not a store, a snapshotter root, and a store a running strata serves (exit 2)", async () => {
    fs.mkdirSync(path.join(root, "plain"));
    fs.writeFileSync(path.join(root, "plain/file"), "");
    let r = run(["check", path.join(root, "plain")]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("it is not a strata store");
    fs.mkdirSync(path.join(root, "snap/vfs"), { recursive: true });
    fs.writeFileSync(path.join(root, "snap/vfs.db"), "");
    r = run(["check", path.join(root, "snap")]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`it is a snapshotter root; check its driver's store: ${path.join(root, "snap/vfs")}`);

    const socket = path.join(root, "p.sock");
    const plugin = await PluginChild.start({ driver: "vfs", socket, stateDir: path.join(root, "state"), logFile: path.join(root, "plugin.log") });
    try {
      await plugin.ok("GraphDriver.Init", { Home: home, Opts: null, UIDMaps: null, GIDMaps: null });
      r = run(["check", home, "--repair"]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(new RegExp(`Cannot check "${home}": strata serve \\(pid \\d+\\) is serving it; stop it first`));
      // Through a symlinked path too: the match is by device and inode.
      fs.symlinkSync(root, path.join(os.tmpdir(), path.basename(root) + "-link"));
      try {
        expect(run(["check", path.join(os.tmpdir(), path.basename(root) + "-link", "home")]).code).toBe(2);
      } finally {
        fs.rmSync(path.join(os.tmpdir(), path.basename(root) + "-link"));
      }
    } finally {
      await plugin.stop();
    }
    r = run(["check", home]);
    expect(r.code).toBe(0);
  }, 30_000);

  test("knows strata's command lines from others'", () => {
    expect(strataCommand(["/usr/local/bin/strata", "serve"])).toBe("serve");
    expect(strataCommand(["node_modules/.bin/bun", "src/main.bun.ts", "snapshotter", "--root", "/r"])).toBe("snapshotter");
    expect(strataCommand(["deno", "run", "-A", "src/main.deno.ts", "serve"])).toBe("serve");
    expect(strataCommand(["/strata", "serve", "--state-dir", "/data/.strata-state"])).toBe("serve");
    expect(strataCommand(["bash", "-c", "strata serve"])).toBe(null);
    expect(strataCommand(["/usr/local/bin/strata", "check", "/h"])).toBe(null);
    expect(strataCommand(["/usr/bin/vim", "serve"])).toBe(null);
  });
});

describe("strata check: a snapshotter's store", () => {
  test("compares the records with the layers, read-only; refused while the snapshotter runs", async () => {
    const snapRoot = path.join(root, "snap");
    const socket = path.join(root, "snap.sock");
    const proc = Bun.spawn([BUN, "src/main.bun.ts", "snapshotter", "--driver", "vfs", "--socket", socket, "--root", snapRoot], { stderr: "pipe" });
    const client = new SnapClient(socket);
    try {
      for (let i = 0; i < 200 && !fs.existsSync(socket); i++) await Bun.sleep(25);
      await client.prepare("ns/1/a");
      await client.commit("ns/1/base", "ns/1/a");
      await client.prepare("ns/1/b", "ns/1/base");
      await client.prepare("ns/1/c", "ns/1/base");
      const live = run(["check", path.join(snapRoot, "vfs")]);
      expect(live.code).toBe(2);
      expect(live.err).toMatch(/strata snapshotter \(pid \d+\) is serving it/);
    } finally {
      client.close();
      proc.kill("SIGTERM");
      await proc.exited;
    }
    const vfsHome = path.join(snapRoot, "vfs");
    expect(run(["check", vfsHome]).code).toBe(0);
    // Layer 3 (ns/1/c) deleted behind the snapshotter's back, a layer no record names added.
    fs.rmSync(path.join(vfsHome, "dir/3"), { recursive: true });
    fs.rmSync(path.join(vfsHome, "meta/3"));
    fs.mkdirSync(path.join(vfsHome, "dir/99"));
    const dbBefore = fs.readFileSync(path.join(snapRoot, "vfs.db"));
    const report = await checkStore(vfsHome, { sys, repair: true, servers: [], openDatabase });
    expect(kinds(report)).toEqual([
      "note layer-without-record dir/99",
      "problem layer-without-snapshot dir/99",
      "problem snapshot-without-layer ../vfs.db",
    ]);
    expect(report.findings.find((f) => f.kind === "snapshot-without-layer")!.message).toBe('snapshot "ns/1/c" is recorded but its layer 3 is missing: containerd will fail to mount it');
    expect(report.remaining).toBe(2);
    expect(fs.existsSync(path.join(vfsHome, "dir/99"))).toBe(true);
    expect(fs.readFileSync(path.join(snapRoot, "vfs.db")).equals(dbBefore)).toBe(true);
  }, 30_000);
});

describe("strata check: overlay", () => {
  test.skipIf(!!overlay.skip)(named("finds the damage, repairs only what is safe, and the driver starts after", overlay.skip), async () => {
    const d = await newDriver(overlay, home);
    for (const [id, parent] of [["base", ""], ["mid", "base"], ["top", "mid"], ["p2", ""], ["c2", "p2"]]) await d.create(id, parent, {});
    const link = (id: string) => fs.readFileSync(path.join(home, id, "link"), "utf8").trim();
    const topDir = await d.get("top", "");
    // A link to a layer that is gone, and a layer whose link is gone.
    fs.symlinkSync("../gone/diff", path.join(home, LINK_DIR, "AAAAAAAAAAAAAAAAAAAAAAAAAA"));
    const midLink = link("mid");
    fs.unlinkSync(path.join(home, LINK_DIR, midLink));
    // A parent removed behind the driver's back, with its link.
    fs.unlinkSync(path.join(home, LINK_DIR, link("p2")));
    fs.rmSync(path.join(home, "p2"), { recursive: true });
    // A create cut short, a removal cut short with a mount still in it, a name strata never makes.
    fs.mkdirSync(path.join(home, ".tmp/new-z-1-1/diff"), { recursive: true });
    fs.mkdirSync(path.join(home, ".tmp/rm-q-1-2/merged"), { recursive: true });
    sys.mount("tmpfs", path.join(home, ".tmp/rm-q-1-2/merged"), "tmpfs", 0, "size=1m");
    fs.writeFileSync(path.join(home, ".tmp/mine"), "");
    fs.mkdirSync(path.join(home, ".tmp/other"));
    sys.mount("tmpfs", path.join(home, ".tmp/other"), "tmpfs", 0, "size=1m");
    // An empty layer directory, one that holds files but no link, and a mount left on a non-layer.
    fs.mkdirSync(path.join(home, "emptyone"));
    fs.mkdirSync(path.join(home, "half/diff"), { recursive: true });
    fs.writeFileSync(path.join(home, "half/diff/precious"), "keep me");
    fs.mkdirSync(path.join(home, "half/merged"));
    sys.mount("tmpfs", path.join(home, "half/merged"), "tmpfs", 0, "size=1m");
    // A mount nobody owns inside a layer, and a layer's mount a container may be using.
    fs.mkdirSync(path.join(home, "base/diff/sub"));
    sys.mount("tmpfs", path.join(home, "base/diff/sub"), "tmpfs", 0, "size=1m");

    const mountsBefore = mountsBelow(home).length;
    const found = await checkStore(home, { sys, repair: false, servers: [] });
    expect(mountsBelow(home).length).toBe(mountsBefore);
    expect(kinds(found)).toEqual([
      "note layer-mounted top/merged",
      "problem dangling-link .l/AAAAAAAAAAAAAAAAAAAAAAAAAA",
      "problem empty-layer-dir emptyone",
      "problem foreign-entry .tmp/mine",
      "problem foreign-entry .tmp/other",
      "problem foreign-mount .tmp/other",
      "problem foreign-mount base/diff/sub",
      "problem incomplete-layer half",
      "problem missing-link .l/" + midLink,
      "problem missing-parent c2",
      "problem stale-mount half/merged",
      "problem temp-entry .tmp/new-z-1-1",
      "problem temp-entry .tmp/rm-q-1-2",
    ]);
    expect(found).toMatchObject({ driver: "overlay", problems: 12, remaining: 12 });

    const repaired = await checkStore(home, { sys, repair: true, servers: [] });
    expect(repaired.findings.filter((f) => f.repaired).map((f) => `${f.kind}: ${f.repaired}`).sort()).toEqual([
      "dangling-link: removed the link",
      "empty-layer-dir: removed the empty directory",
      `missing-link: made it again (-> ../mid/diff)`,
      "stale-mount: unmounted it",
      "temp-entry: removed it",
      "temp-entry: unmounted 1 mount and removed it",
    ]);
    expect(repaired).toMatchObject({ problems: 12, repaired: 6, remaining: 6 });
    expect(fs.readFileSync(path.join(home, "half/diff/precious"), "utf8")).toBe("keep me");
    expect(fs.existsSync(path.join(home, ".tmp/mine"))).toBe(true);
    expect(mountsBelow(home).map((m) => path.relative(fs.realpathSync(home), m.mountPoint)).sort()).toEqual([".tmp/other", "base/diff/sub", "top/merged"]);
    expect(kinds(await checkStore(home, { sys, repair: false, servers: [] }))).toEqual([
      "note layer-mounted top/merged",
      "problem foreign-entry .tmp/mine",
      "problem foreign-entry .tmp/other",
      "problem foreign-mount .tmp/other",
      "problem foreign-mount base/diff/sub",
      "problem incomplete-layer half",
      "problem missing-parent c2",
    ]);
    expect(fs.existsSync(topDir)).toBe(true);
    await d.put("top");
    unmountBelow(sys, path.join(home, "base/diff"));
    fs.rmSync(path.join(home, "half"), { recursive: true });
    const restarted = await newDriver(overlay, home);
    // The restored link lets top mount its whole chain again.
    const dir = await restarted.get("top", "");
    expect(fs.existsSync(path.join(dir, "."))).toBe(true);
    await restarted.put("top");
    await restarted.cleanup();
  }, 30_000);

  test.skipIf(!!sizeLimitsUnavailable)(named("test-mounts size-limited layers' images outside Home: a sound one is a note, a broken one a problem", sizeLimitsUnavailable), async () => {
    const d = await newDriver(overlay, home);
    await d.create("base", "", {});
    await d.createReadWrite("sized", "base", { storageOpt: { size: "32M" } });
    await d.create("child", "", {});
    await d.cleanup();
    // As after a reboot: the image is not mounted, so its link file cannot be read.
    sys.umount2(path.join(home, "sized"), 0);
    // An image that is no filesystem.
    fs.mkdirSync(path.join(home, "bad"));
    fs.writeFileSync(path.join(home, ".quota/bad.img"), Buffer.alloc(16 << 20));
    const found = await checkStore(home, { sys, repair: true, servers: [] });
    expect(kinds(found)).toEqual([
      "note image-not-mounted .quota/sized.img",
      "problem image-does-not-mount .quota/bad.img",
    ]);
    expect(found.remaining).toBe(1);
    expect(mountsBelow(root)).toEqual([]);
    fs.rmSync(path.join(home, ".quota/bad.img"));
    fs.rmdirSync(path.join(home, "bad"));
    const restarted = await newDriver(overlay, home);
    expect(await restarted.exists("sized")).toBe(true);
    await restarted.remove("sized");
  }, 30_000);
});
