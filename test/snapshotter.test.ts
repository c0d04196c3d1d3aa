/**
 * strata's own tests of the snapshotter front end, over its real gRPC socket, for every driver:
 * what containerd's SnapshotterSuite does not call (Mounts, Usage, Cleanup, List filters, error
 * codes, restart, deep chains).
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { status } from "@grpc/grpc-js";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import "../src/drivers.ts";
import { initDriver } from "../src/core/driver.ts";
import { silentLogger } from "../src/core/log.ts";
import { openSnapshotter } from "../src/snapshotter/command.ts";
import { type SnapshotServer, listenSnapshotter } from "../src/snapshotter/server.ts";
import { SnapshotService } from "../src/snapshotter/service.ts";
import { Metadata } from "../src/snapshotter/metadata.ts";
import type { Driver } from "../src/core/driver.ts";
import { openDatabase } from "../src/store/sqlite/bun.ts";
import { createSys } from "../src/sys/bun.ts";
import type { Mount } from "../src/snapshotter/gen/github.com/containerd/containerd/api/types/mount.ts";
import { TEST_DRIVERS, makeTempRoot, named, removeTempRoot, rootUnavailable, sizeLimitsUnavailable } from "./helpers/drivers.ts";
import { mountsBelow, unmountBelow } from "./helpers/mounts.ts";
import { SnapClient, failure } from "./helpers/snapshot-client.ts";
import { compactedDataLength } from "../src/snapshotter/mount-fit.ts";
import { lowerdirPlusUnavailable } from "./helpers/overlay-probe.ts";

const sys = createSys();
// Before Linux 6.8 (Debian 12's 6.1) overlay chains go through mount(2): 129 layers at most.
const NO_LOWERDIR_PLUS = await lowerdirPlusUnavailable(sys);
const DRIVERS = TEST_DRIVERS.map((d) => ({ name: d.name, skip: d.skip ?? rootUnavailable }));


/** One snapshotter on a fresh root, served on a socket in it. */
class Instance {
  readonly root: string;
  readonly socket: string;
  service!: SnapshotService;
  server!: SnapshotServer;
  client!: SnapClient;
  constructor(readonly driver: string, readonly size = "") {
    this.root = makeTempRoot(driver, "strata-snap-");
    this.socket = path.join(this.root, "s.sock");
  }
  get store(): string {
    return path.join(this.root, "store");
  }
  async start(): Promise<this> {
    this.service = await openSnapshotter({ driver: this.driver, root: this.store, socket: this.socket, log: silentLogger, sys, openDatabase, size: this.size });
    this.server = await listenSnapshotter(this.service, this.socket, silentLogger);
    this.client = new SnapClient(this.socket);
    return this;
  }
  async stop(): Promise<void> {
    this.client.close();
    await this.server.close(1000);
    await this.service.close();
    fs.rmSync(this.socket, { force: true });
  }
  /** Stop, unmount whatever the test left, delete the root. */
  async destroy(): Promise<void> {
    await this.stop();
    unmountBelow(sys, this.root);
    removeTempRoot(this.root);
  }
  /**
   * Perform `mounts` on a fresh dir under the root, as containerd's mount package would (mount(8)
   * here: this is the test, not strata): a long overlay lower list is named relative to its common
   * directory, from there.
   */
  mount(mounts: Mount[]): string {
    const target = fs.mkdtempSync(path.join(this.root, "mnt-"));
    expect(mounts.length).toBe(1);
    const m = mounts[0]!;
    let options = m.options;
    let cwd: string | undefined;
    const lower = options.find((o) => o.startsWith("lowerdir="));
    if (m.type === "overlay" && lower && options.join(",").length >= 4096 - 512) {
      const dirs = lower.slice("lowerdir=".length).split(":");
      cwd = path.dirname(dirs[0]!.replace(/\/diff$/, ""));
      expect(dirs.every((d) => d.startsWith(cwd + "/"))).toBe(true);
      options = options.map((o) => (o === lower ? "lowerdir=" + dirs.map((d) => path.relative(cwd!, d)).join(":") : o));
    }
    const args = m.type === "bind"
      ? ["--bind", ...(m.options.includes("ro") ? ["-o", "ro"] : []), m.source, target]
      : ["-t", m.type, "-o", options.join(","), m.source, target];
    const res = spawnSync("mount", args, { encoding: "utf8", cwd });
    if (res.status !== 0) throw new Error(`mount ${args.join(" ")}: ${res.stderr}`);
    if (m.type === "bind" && m.options.includes("ro")) spawnSync("mount", ["-o", "remount,bind,ro", target]);
    return target;
  }
}

for (const d of DRIVERS) {
  describe(`snapshotter (${d.name})`, () => {
    let inst: Instance;
    beforeEach(async () => {
      if (d.skip === null) inst = await new Instance(d.name).start();
    });
    afterEach(async () => {
      await inst?.destroy();
    });

    test.skipIf(d.skip !== null)(named("prepare, write, commit, build on it: the child sees its parent and its own writes", d.skip), async () => {
      const c = inst.client;
      const base = inst.mount(await c.prepare("default/1/extract-a b:c"));
      fs.writeFileSync(path.join(base, "hello"), "from base");
      fs.mkdirSync(path.join(base, "etc"));
      fs.writeFileSync(path.join(base, "etc", "gone"), "x");
      sys.umount2(base, 0);
      await c.commit("sha256:base", "default/1/extract-a b:c", { "containerd.io/snapshot.ref": "sha256:base" });
      expect(await c.list()).toHaveLength(1);
      const top = inst.mount(await c.prepare("ctr-1", "sha256:base"));
      expect(fs.readFileSync(path.join(top, "hello"), "utf8")).toBe("from base");
      fs.rmSync(path.join(top, "etc", "gone"));
      fs.writeFileSync(path.join(top, "new"), "x".repeat(100_000));
      sys.umount2(top, 0);
      // The parent is untouched by its child's writes.
      const view = inst.mount(await c.view("view-1", "sha256:base"));
      expect(fs.readFileSync(path.join(view, "etc", "gone"), "utf8")).toBe("x");
      expect(fs.existsSync(path.join(view, "new"))).toBe(false);
      expect(() => fs.writeFileSync(path.join(view, "w"), "no")).toThrow(/EROFS|read-only/);
      sys.umount2(view, 0);
    });

    test.skipIf(d.skip !== null)(named("Stat and List report kinds, parents, labels and timestamps to the nanosecond", d.skip), async () => {
      const c = inst.client;
      await c.prepare("a", "", { keep: "1", empty: "" });
      await c.commit("A", "a", { "containerd.io/gc.root": "x" });
      await c.prepare("b", "A");
      await c.view("v", "A");
      const a = await c.stat("A");
      expect([a.name, a.parent, a.kind, a.labels]).toEqual(["A", "", 3, { "containerd.io/gc.root": "x" }]);
      expect(a.createdAt).toEqual(a.updatedAt!);
      const b = await c.stat("b");
      expect([b.parent, b.kind]).toEqual(["A", 2]);
      expect((await c.stat("v")).kind).toBe(1);
      const listed = await c.list();
      expect(listed.map((i) => i.name).sort()).toEqual(["A", "b", "v"]);
      expect(listed.find((i) => i.name === "b")).toEqual(b);
    });

    test.skipIf(d.skip !== null)(named("Update: labels replaced, one label set or deleted, updated_at moves, other fields refused", d.skip), async () => {
      const c = inst.client;
      await c.prepare("k", "", { a: "1", b: "2" });
      const before = await c.stat("k");
      expect((await c.update({ name: "k", labels: { c: "3" } })).labels).toEqual({ c: "3" });
      expect((await c.update({ name: "k", labels: { d: "4" } }, ["labels.d"])).labels).toEqual({ c: "3", d: "4" });
      const after = await c.update({ name: "k", labels: {} }, ["labels.c"]);
      expect(after.labels).toEqual({ d: "4" });
      expect(after.createdAt).toEqual(before.createdAt!);
      expect(after.updatedAt).not.toEqual(before.updatedAt!);
      const bad = await failure(c.update({ name: "k", labels: {} }, ["parent"]));
      expect(bad.code).toBe(status.INVALID_ARGUMENT);
      expect(bad.details).toContain('"parent"');
    });

    test.skipIf(d.skip !== null)(named("List filters: kind, name regexp, labels with quoted keys, presence, AND within, OR across", d.skip), async () => {
      const c = inst.client;
      await c.prepare("x", "", { "containerd.io/gc.root": "yes", team: "a" });
      await c.commit("sha256:one", "x", { "containerd.io/gc.root": "yes", team: "a" });
      await c.prepare("moby/1/c1", "sha256:one", { team: "b" });
      await c.view("moby/2/v1", "sha256:one");
      const names = async (...f: string[]) => (await c.list(...f)).map((i) => i.name).sort();
      expect(await names("kind==committed")).toEqual(["sha256:one"]);
      expect(await names("kind==active")).toEqual(["moby/1/c1"]);
      expect(await names("kind!=committed")).toEqual(["moby/1/c1", "moby/2/v1"]);
      expect(await names("name~=^moby/")).toEqual(["moby/1/c1", "moby/2/v1"]);
      expect(await names('labels."containerd.io/gc.root"')).toEqual(["sha256:one"]);
      expect(await names('labels."containerd.io/gc.root"==yes,kind==committed')).toEqual(["sha256:one"]);
      expect(await names("labels.team==b", "kind==view")).toEqual(["moby/1/c1", "moby/2/v1"]);
      expect(await names("parent==sha256:one,labels.team==b")).toEqual(["moby/1/c1"]);
      const bad = await failure(c.list("name~=("));
      expect(bad.code).toBe(status.INVALID_ARGUMENT);
    });

    test.skipIf(d.skip !== null)(named("a store that never held a snapshot lists nothing, without an error", d.skip), async () => {
      expect(await inst.client.list()).toEqual([]);
    });

    test.skipIf(d.skip !== null)(named("error codes containerd acts on", d.skip), async () => {
      const c = inst.client;
      await c.prepare("p");
      expect((await failure(c.prepare("p"))).code).toBe(status.ALREADY_EXISTS);
      expect((await failure(c.prepare("q", "missing"))).code).toBe(status.NOT_FOUND);
      expect((await failure(c.prepare("q", "p"))).code).toBe(status.INVALID_ARGUMENT); // parent not committed
      await c.commit("P", "p");
      expect((await failure(c.commit("P2", "P"))).code).toBe(status.FAILED_PRECONDITION); // not active
      await c.prepare("q", "P");
      expect((await failure(c.commit("P", "q"))).code).toBe(status.ALREADY_EXISTS);
      const busy = await failure(c.remove("P"));
      expect(busy).toEqual({ code: status.FAILED_PRECONDITION, details: 'Cannot remove snapshot "P": snapshot "q" is built on it' });
      expect((await failure(c.remove("nope"))).code).toBe(status.NOT_FOUND);
      expect((await failure(c.stat("nope"))).code).toBe(status.NOT_FOUND);
      expect((await failure(c.mounts("P"))).code).toBe(status.FAILED_PRECONDITION);
      expect(await failure(c.prepare(""))).toEqual({ code: status.INVALID_ARGUMENT, details: "Invalid Prepare request: key must not be empty" });
      expect((await failure(c.prepare("a\0b"))).details).toBe("Invalid Prepare request: key must not contain NUL");
      expect((await failure(c.commit("", "q"))).details).toBe("Invalid Commit request: name must not be empty");
      // Nothing was half made by the refusals.
      expect((await c.list()).map((i) => i.name).sort()).toEqual(["P", "q"]);
    });

    test.skipIf(d.skip !== null)(named("Mounts repeats what Prepare and View returned", d.skip), async () => {
      const c = inst.client;
      // Every path a mount names exists while its snapshot is active (a commit may store the
      // committed layer otherwise: erofs turns the upper dir into an image).
      const expectPaths = (mounts: typeof prepared) => {
        for (const m of mounts) {
          for (const p of [m.source, ...m.options.flatMap((o) => o.replace(/^[a-z]+=/, "").split(":"))]) {
            if (p.startsWith("/")) expect(path.isAbsolute(p) && fs.existsSync(p)).toBe(true);
          }
        }
      };
      const prepared = await c.prepare("b");
      expect(await c.mounts("b")).toEqual(prepared);
      expectPaths(prepared);
      await c.commit("B", "b");
      const active = await c.prepare("c", "B");
      expect(await c.mounts("c")).toEqual(active);
      const view = await c.view("v", "B");
      expect(await c.mounts("v")).toEqual(view);
      expectPaths([...active, ...view]);
    });

    test.skipIf(d.skip !== null)(named("Usage: an active snapshot is measured as it grows, a committed one keeps what Commit recorded", d.skip), async () => {
      const c = inst.client;
      const dir = inst.mount(await c.prepare("u"));
      const empty = await c.usage("u");
      fs.writeFileSync(path.join(dir, "one-mib"), Buffer.alloc(1 << 20, 1));
      for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(dir, `f${i}`), "x");
      const grown = await c.usage("u");
      expect(grown.size - empty.size).toBeGreaterThanOrEqual(1 << 20);
      expect(grown.inodes - empty.inodes).toBe(11);
      sys.umount2(dir, 0);
      await c.commit("U", "u");
      expect(await c.usage("U")).toEqual(grown);
      expect(await c.usage("U")).toEqual(grown);
      await c.view("uv", "U");
      expect(await c.usage("uv")).toEqual({ size: 0, inodes: 0 });
    });

    test.skipIf(d.skip !== null)(named("Remove and Cleanup: layers go with their snapshots; Cleanup removes layers no snapshot names", d.skip), async () => {
      const c = inst.client;
      await c.prepare("r");
      await c.commit("R", "r");
      await c.prepare("r2", "R");
      const home = path.join(inst.store, d.name);
      const layers = () => fs.readdirSync(path.join(home, { vfs: "dir", btrfs: "subvolumes" }[d.name as string] ?? "")).filter((n) => !n.startsWith(".")).sort();
      expect(layers()).toEqual(["1", "2"]);
      // A layer made behind the records' back (what a failure outside strata could leave), while stopped.
      await inst.stop();
      const driver = await initDriver(d.name, { home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger });
      await driver.create("77", "", {});
      await driver.create("78", "77", {});
      await inst.start();
      expect(layers()).toEqual(["1", "2", "77", "78"]);
      await inst.client.cleanup();
      expect(layers()).toEqual(["1", "2"]);
      expect((await inst.client.list()).map((i) => i.name).sort()).toEqual(["R", "r2"]);
      await inst.client.remove("r2");
      await inst.client.remove("R");
      expect(layers()).toEqual([]);
    });

    test.skipIf(d.skip !== null)(named("Cleanup racing Prepare, Commit and Remove takes no layer a record names and leaves no orphan", d.skip), async () => {
      const c = inst.client;
      const home = path.join(inst.store, d.name);
      const layers = () => fs.readdirSync(path.join(home, { vfs: "dir", btrfs: "subvolumes" }[d.name as string] ?? "")).filter((n) => !n.startsWith(".")).sort();
      await c.prepare("base");
      await c.commit("BASE", "base");
      const work = Array.from({ length: 20 }, async (_, i) => {
        await c.prepare(`a${i}`, "BASE");
        if (i % 2 === 0) await c.commit(`C${i}`, `a${i}`);
        if (i % 4 === 0) await c.remove(i % 2 === 0 ? `C${i}` : `a${i}`);
      });
      const cleanups = Array.from({ length: 10 }, () => c.cleanup());
      await Promise.all([...work, ...cleanups]);
      await c.cleanup();
      const infos = await c.list();
      expect(infos).toHaveLength(1 + 20 - 5);
      // Every record still has its layer (and mounts), and every layer has a record.
      for (const info of infos.filter((i) => i.kind === 2)) expect((await c.mounts(info.name)).length).toBe(1);
      expect(layers()).toHaveLength(infos.length);
    });

    test.skipIf(d.skip !== null)(named("a restart keeps every snapshot, its mounts and its mounted users", d.skip), async () => {
      const c = inst.client;
      const dir = inst.mount(await c.prepare("k"));
      fs.writeFileSync(path.join(dir, "f"), "1");
      sys.umount2(dir, 0);
      await c.commit("K", "k");
      const mountsBefore = await c.prepare("running", "K");
      const running = inst.mount(mountsBefore);
      const infoBefore = await c.list();
      await inst.stop();
      await inst.start();
      expect(await inst.client.list()).toEqual(infoBefore);
      expect(await inst.client.mounts("running")).toEqual(mountsBefore);
      fs.writeFileSync(path.join(running, "g"), "still writable");
      expect(fs.readFileSync(path.join(running, "f"), "utf8")).toBe("1");
      sys.umount2(running, 0);
      await inst.client.remove("running");
      await inst.client.remove("K");
      expect(await inst.client.list()).toEqual([]);
    });
  });
}

describe("snapshotter (overlay): deep chains", () => {
  const skip = DRIVERS[1]!.skip;
  let inst: Instance | undefined;
  afterEach(async () => {
    await inst?.destroy();
    inst = undefined;
  });

  /** A chain of `n` committed layers; layer i writes /layer-i (mounted only where `write` says), layer 5 deletes /layer-0. */
  async function chain(c: SnapClient, n: number, write: (i: number) => boolean): Promise<string> {
    let parent = "";
    for (let i = 0; i < n; i++) {
      const mounts = await c.prepare(`extract-${i}`, parent);
      if (write(i)) {
        const dir = inst!.mount(mounts);
        fs.writeFileSync(path.join(dir, `layer-${i}`), String(i));
        if (i === 5) fs.rmSync(path.join(dir, "layer-0"));
        sys.umount2(dir, 0);
      }
      await c.commit(`L${i}`, `extract-${i}`);
      parent = `L${i}`;
    }
    return parent;
  }

  test.skipIf(skip !== null)(named("a chain past one page is handed out flat: containerd's mount package shortens it to fit", skip), async () => {
    inst = await new Instance("overlay").start();
    const c = inst.client;
    const top = await c.prepare("container", await chain(c, 120, (i) => i <= 5 || i === 119));
    const options = top[0]!.options;
    expect(options.join(",").length).toBeGreaterThan(4096);
    expect(compactedDataLength(options)).toBeLessThan(4096);
    expect(options.find((o) => o.startsWith("lowerdir="))!.split(":")).toHaveLength(120);
    const target = inst.mount(top);
    expect(fs.readFileSync(path.join(target, "layer-119"), "utf8")).toBe("119");
    expect(fs.readFileSync(path.join(target, "layer-1"), "utf8")).toBe("1");
    expect(fs.existsSync(path.join(target, "layer-0"))).toBe(false);
    sys.umount2(target, 0);
    expect(mountsBelow(inst.store)).toEqual([]); // strata mounted nothing itself
  }, 120_000);

  test.skipIf((skip ?? NO_LOWERDIR_PLUS) !== null)(named("a chain too deep even for that is handed out over one lower stack strata mounts", skip ?? NO_LOWERDIR_PLUS), async () => {
    inst = await new Instance("overlay").start();
    const c = inst.client;
    const depth = 480;
    const top = await c.prepare("container", await chain(c, depth, (i) => i <= 5 || i === depth - 1));
    expect(top[0]!.options.join(",").length).toBeLessThan(4096);
    expect(top[0]!.options).toContain(`lowerdir=${path.join(inst.store, "overlay", String(depth), "merged")}`);
    const dir = inst.mount(top);
    expect(fs.readFileSync(path.join(dir, `layer-${depth - 1}`), "utf8")).toBe(String(depth - 1));
    expect(fs.readFileSync(path.join(dir, "layer-1"), "utf8")).toBe("1");
    expect(fs.existsSync(path.join(dir, "layer-0"))).toBe(false);
    sys.umount2(dir, 0);
    // The stacks go with their layers: once the chain is removed top down, nothing stays mounted.
    await c.remove("container");
    for (let i = depth - 1; i >= 0; i--) await c.remove(`L${i}`);
    expect(mountsBelow(inst.store)).toEqual([]);
  }, 300_000);
});

describe("snapshotter (overlay): size limits", () => {
  const skip = sizeLimitsUnavailable;
  let inst: Instance | undefined;
  afterEach(async () => {
    await inst?.destroy();
    inst = undefined;
  });
  const fill = (dir: string, mib: number) => {
    const fd = fs.openSync(path.join(dir, "fill"), "w");
    try {
      for (let i = 0; i < mib; i++) fs.writeSync(fd, Buffer.alloc(1 << 20, 7));
    } finally {
      fs.closeSync(fd);
    }
  };

  test.skipIf(skip !== null)(named("--size limits containers, not the layers containerd unpacks; a label sets one snapshot's limit", skip), async () => {
    inst = await new Instance("overlay", "32M").start();
    const c = inst.client;
    const unpack = inst.mount(await c.prepare("default/1/extract-123-abc sha256:base"));
    fill(unpack, 40); // image layers are not limited
    sys.umount2(unpack, 0);
    await c.commit("sha256:base", "default/1/extract-123-abc sha256:base");
    const ctr = inst.mount(await c.prepare("default/2/ctr", "sha256:base"));
    expect(() => fill(ctr, 64)).toThrow(/ENOSPC|no space/i);
    fs.rmSync(path.join(ctr, "fill"));
    fs.writeFileSync(path.join(ctr, "small"), "fits");
    sys.umount2(ctr, 0);
    const labelled = inst.mount(await c.prepare("default/3/big", "sha256:base", { "containerd.io/snapshot/strata.size": "0" }));
    fill(labelled, 40);
    sys.umount2(labelled, 0);
    const bad = await failure(c.prepare("default/4/bad", "sha256:base", { "containerd.io/snapshot/strata.size": "lots" }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect((await failure(c.stat("default/4/bad"))).code).toBe(status.NOT_FOUND);
    // Removing the limited snapshot gives its filesystem back: nothing of it stays mounted.
    await c.remove("default/2/ctr");
    expect(mountsBelow(path.join(inst.store, "overlay")).map((m) => m.mountPoint)).toEqual([]);
  }, 60_000);

  test.skipIf(DRIVERS[0]!.skip !== null)("--driver auto keeps to the driver whose records are there, and refuses to guess between two", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-snap-"));
    const open = (driver: string) => openSnapshotter({ driver, root, socket: path.join(root, "s"), log: silentLogger, sys, openDatabase });
    try {
      const vfs = await open("vfs");
      await vfs.prepare("kept", "", { labels: {} });
      await vfs.close();
      // overlay has the higher priority, and would pick a fresh store on a root without records.
      const auto = await open("auto");
      expect(auto.driverName).toBe("vfs");
      expect(auto.list(() => true).map((i) => i.key)).toEqual(["kept"]);
      await auto.close();
      await (await open("overlay")).close();
      await expect(open("auto")).rejects.toThrow(`Cannot choose a driver for "${root}": it holds the records of overlay and vfs; name one with --driver`);
    } finally {
      unmountBelow(sys, root);
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test.skipIf(DRIVERS[0]!.skip !== null)("--size is refused for vfs, with the reason", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-snap-"));
    try {
      await expect(openSnapshotter({ driver: "vfs", root, socket: path.join(root, "s"), log: silentLogger, sys, openDatabase, size: "1G" }))
        .rejects.toThrow("Invalid --size 1G: the vfs driver has no size limits (overlay and btrfs have)");
      await expect(openSnapshotter({ driver: "overlay", root, socket: path.join(root, "s"), log: silentLogger, sys, openDatabase, size: "1M" }))
        .rejects.toThrow("Invalid --size 1M: below the minimum of 16M");
      expect(fs.readdirSync(root)).toEqual([]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("snapshotter --root", () => {
  test("--root is checked as a Home is, before anything is created", async () => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), "strata-snap-"));
    try {
      const open = (root: string) => openSnapshotter({ driver: "vfs", root, socket: path.join(parent, "s"), log: silentLogger, sys, openDatabase });
      await expect(open("/")).rejects.toThrow('Cannot use "/" as --root: it is a system directory');
      await expect(open("relative")).rejects.toThrow('Cannot use "relative" as --root: it is not absolute');
      await expect(open(`${parent}/a/../../escape`)).rejects.toThrow(`Cannot use "${parent}/a/../../escape" as --root: it has a ".." component`);
      await expect(open("/proc/self/root")).rejects.toThrow('Cannot use "/proc/self/root" as --root: it is inside "/proc", a kernel filesystem');
      expect(fs.readdirSync(parent)).toEqual([]);
      expect(fs.existsSync(path.join(path.dirname(parent), "escape"))).toBe(false);
    } finally {
      fs.rmSync(parent, { recursive: true, force: true });
    }
  });
});

describe("Cleanup against calls in flight (the service, its driver's layer listing held open)", () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-snapclean-"));
  });
  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  /** A service on vfs whose `layerIds` waits for `during` either before or after it reads the store. */
  async function service(when: "before" | "after", during: () => Promise<void>) {
    const driver = await initDriver("vfs", { home: path.join(root, "vfs"), options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger });
    const gated: Driver = Object.create(driver);
    gated.layerIds = async () => {
      if (when === "before") await during();
      const ids = await driver.layerIds();
      if (when === "after") await during();
      return ids;
    };
    return new SnapshotService(gated, new Metadata(openDatabase(path.join(root, "vfs.db"))), silentLogger);
  }

  test("a snapshot prepared while Cleanup lists the layers keeps its layer", async () => {
    let svc!: SnapshotService;
    svc = await service("before", async () => {
      await svc.prepare("fresh", "", { labels: {} });
    });
    await svc.cleanup();
    expect(svc.list(() => true).map((i) => i.key)).toEqual(["fresh"]);
    expect(await svc.mounts("fresh")).toHaveLength(1);
    expect(fs.readdirSync(path.join(root, "vfs", "dir"))).toEqual(["1"]);
    await svc.close();
  });

  test("a snapshot removed after Cleanup listed its layer is not an error", async () => {
    let svc!: SnapshotService;
    let armed = false;
    svc = await service("after", async () => {
      if (armed) await svc.remove("gone");
    });
    await svc.prepare("gone", "", { labels: {} });
    await svc.prepare("kept", "", { labels: {} });
    armed = true;
    await svc.cleanup();
    expect(svc.list(() => true).map((i) => i.key)).toEqual(["kept"]);
    expect(fs.readdirSync(path.join(root, "vfs", "dir"))).toEqual(["2"]);
    await svc.close();
  });
});
