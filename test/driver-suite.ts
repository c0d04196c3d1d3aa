/**
 * The conformance suite every driver runs (like moby's graphtest and containerd's SnapshotterSuite):
 * each case gets a fresh temp root and a fresh driver on it.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { readTar } from "../src/archive/tar-reader.ts";
import type { Driver } from "../src/core/driver.ts";
import { BusyError } from "../src/core/errors.ts";
import type { Sys } from "../src/sys/types.ts";
import { bytesOf, entry, file, makeTar, streamOf } from "./helpers/layer-tar.ts";
import { snapshot } from "./helpers/tree.ts";
import { unmountBelow } from "./helpers/mounts.ts";

/** How a driver joins the suite. */
export interface SuiteOptions {
  name: string;
  sys: Sys;
  /** A new driver on an empty Home. */
  newDriver(home: string): Promise<Driver>;
  /** When set, every case is skipped with this reason. */
  skip?: string;
  /** Where each case's temp root goes (default: the system temp dir). */
  tmpRoot?: () => string;
  /** Delete a case's temp root (default: fs.rmSync). */
  removeRoot?: (root: string) => void;
}

const CAP = new Uint8Array([0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

/** A base layer with every entry type, special modes, owners, xattrs and nanosecond times. */
export async function baseLayerTar(): Promise<Uint8Array> {
  return makeTar([
    entry({ name: "bin/", type: "directory", mode: 0o755 }),
    file("bin/tool", "#!/bin/sh\necho tool\n", { mode: 0o4755, uid: 0, gid: 0, xattrs: new Map([["security.capability", CAP]]) }),
    entry({ name: "bin/tool-link", type: "link", linkname: "bin/tool" }),
    entry({ name: "bin/sh", type: "symlink", linkname: "busybox", mtime: { sec: 1_500_000_000, nsec: 123_456_789 } }),
    file("bin/busybox", "busybox", { mode: 0o755 }),
    entry({ name: "tmp/", type: "directory", mode: 0o1777 }),
    entry({ name: "dev/", type: "directory" }),
    entry({ name: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3 }),
    entry({ name: "dev/loop9", type: "block", mode: 0o660, devmajor: 7, devminor: 9, gid: 6 }),
    entry({ name: "run/", type: "directory" }),
    entry({ name: "run/fifo", type: "fifo", mode: 0o600 }),
    entry({ name: "home/user/", type: "directory", mode: 0o2750, uid: 1234, gid: 5678 }),
    file("home/user/notes.txt", "hello", { uid: 1234, gid: 5678, mode: 0o640, mtime: { sec: 1_700_000_000, nsec: 999_999_999 } }),
    file("etc/config", "a=1\n", { xattrs: new Map([["user.tag", new Uint8Array([0, 255, 10, 13])]]) }),
    entry({ name: "etc/old/", type: "directory" }),
    file("etc/old/a", "old-a"),
    file("etc/old/b", "old-b"),
  ]);
}

/** Every driver runs this. */
export function runDriverSuite(opts: SuiteOptions): void {
  const { sys } = opts;
  describe(`driver ${opts.name}`, () => {
    let root: string;
    let driver: Driver;
    beforeEach(async () => {
      if (opts.skip) return;
      root = fs.mkdtempSync(path.join(opts.tmpRoot?.() ?? os.tmpdir(), `strata-${opts.name}-`));
      driver = await opts.newDriver(path.join(root, "home"));
    });
    afterEach(async () => {
      if (opts.skip) return;
      await driver.cleanup();
      // Cleanup keeps what holds layers (a size-limited layer's own filesystem): unmount it to delete the root.
      unmountBelow(sys, root);
      if (opts.removeRoot) opts.removeRoot(root);
      else fs.rmSync(root, { recursive: true, force: true });
    });
    const it = (name: string, fn: () => Promise<void>, timeout = 30_000) => test.skipIf(!!opts.skip)(name, fn, timeout);
    const withDir = async <T>(id: string, fn: (dir: string) => T | Promise<T>): Promise<T> => {
      const dir = await driver.get(id, "");
      try {
        return await fn(dir);
      } finally {
        await driver.put(id);
      }
    };
    const applyBase = async (id = "base") => {
      await driver.create(id, "", {});
      return driver.applyDiff(id, "", streamOf(await baseLayerTar()));
    };

    it("creates an empty layer", async () => {
      await driver.create("empty", "", {});
      expect(await driver.exists("empty")).toBe(true);
      await withDir("empty", (dir) => {
        expect(path.isAbsolute(dir)).toBe(true);
        expect(fs.readdirSync(dir)).toEqual([]);
      });
    });

    it("applies a base layer with every entry type, mode, owner, xattr and time", async () => {
      const size = await applyBase();
      expect(size).toBe("#!/bin/sh\necho tool\n".length + "busybox".length + "hello".length + "a=1\n".length + 10);
      await withDir("base", (dir) => {
        const s = snapshot(dir, sys);
        expect(s["/bin/tool"]).toMatchObject({ type: "file", mode: "4755", xattrs: { "security.capability": Buffer.from(CAP).toString("hex") } });
        expect(s["/bin/tool"].links).toEqual(["/bin/tool", "/bin/tool-link"]);
        expect(s["/bin/sh"]).toMatchObject({ type: "symlink", target: "busybox", mtimeNs: "1500000000123456789" });
        expect(s["/tmp"]).toMatchObject({ type: "dir", mode: "1777" });
        expect(s["/dev/null"]).toMatchObject({ type: "char", mode: "666", rdev: 0x103 });
        expect(s["/dev/loop9"]).toMatchObject({ type: "block", mode: "660", rdev: 0x709, gid: 6 });
        expect(s["/run/fifo"]).toMatchObject({ type: "fifo", mode: "600" });
        expect(s["/home/user"]).toMatchObject({ type: "dir", mode: "2750", uid: 1234, gid: 5678 });
        expect(s["/home/user/notes.txt"]).toMatchObject({ mode: "640", uid: 1234, gid: 5678, mtimeNs: "1700000000999999999" });
        expect(s["/etc/config"].xattrs).toEqual({ "user.tag": "00ff0a0d" });
      });
    });

    it("gives a new layer everything its parent has", async () => {
      await applyBase();
      await driver.createReadWrite("child", "base", {});
      const parent = await withDir("base", (d) => snapshot(d, sys, { dirMtimes: true }));
      const child = await withDir("child", (d) => snapshot(d, sys, { dirMtimes: true }));
      expect(child).toEqual(parent);
    });

    it("reads a 128-layer chain from the top", async () => {
      let parent = "";
      for (let i = 0; i < 128; i++) {
        const id = `chain-${i}`;
        await driver.create(id, parent, {});
        const items: Parameters<typeof makeTar>[0] = [file(`layer-${i}`, String(i)), file("top", String(i))];
        if (i >= 2) items.push(entry({ name: `.wh.layer-${i - 2}` }));
        await driver.applyDiff(id, parent, streamOf(await makeTar(items)));
        parent = id;
      }
      await withDir(parent, (dir) => {
        expect(fs.readFileSync(path.join(dir, "top"), "utf8")).toBe("127");
        expect(fs.readdirSync(dir).sort()).toEqual(["layer-126", "layer-127", "top"]);
      });
    }, 120_000);

    it("lists added, modified and deleted paths in Changes", async () => {
      await applyBase();
      await driver.createReadWrite("c", "base", {});
      await withDir("c", (dir) => {
        fs.writeFileSync(path.join(dir, "new-file"), "new");
        fs.mkdirSync(path.join(dir, "new-dir"));
        fs.writeFileSync(path.join(dir, "new-dir/inner"), "x");
        fs.writeFileSync(path.join(dir, "etc/config"), "a=2\n");
        fs.rmSync(path.join(dir, "etc/old"), { recursive: true });
        fs.rmSync(path.join(dir, "bin/busybox"));
      });
      expect(await driver.changes("c", "base")).toEqual([
        { Path: "/bin", Kind: 0 },
        { Path: "/bin/busybox", Kind: 2 },
        { Path: "/etc", Kind: 0 },
        { Path: "/etc/config", Kind: 0 },
        { Path: "/etc/old", Kind: 2 },
        { Path: "/new-dir", Kind: 1 },
        { Path: "/new-dir/inner", Kind: 1 },
        { Path: "/new-file", Kind: 1 },
      ]);
    });

    it("compares with the layer's own parent when Changes, Diff and DiffSize get no parent", async () => {
      await applyBase();
      await driver.createReadWrite("c", "base", {});
      await withDir("c", (dir) => fs.writeFileSync(path.join(dir, "only-here"), "12345"));
      expect(await driver.changes("c", "")).toEqual([{ Path: "/only-here", Kind: 1 }]);
      expect(await driver.diffSize("c", "")).toBe(5);
      const names: string[] = [];
      for await (const e of readTar(await driver.diff("c", ""))) names.push(e.header.name);
      expect(names).toEqual(["only-here"]);
    });

    it("round-trips Diff into ApplyDiff with whiteouts and matching sizes", async () => {
      await applyBase();
      await driver.createReadWrite("c", "base", {});
      await withDir("c", (dir) => {
        fs.writeFileSync(path.join(dir, "new-file"), "new content");
        fs.writeFileSync(path.join(dir, "etc/config"), "a=22\n");
        fs.rmSync(path.join(dir, "etc/old"), { recursive: true });
        fs.chmodSync(path.join(dir, "home/user/notes.txt"), 0o600);
      });
      const tar = await bytesOf(await driver.diff("c", "base"));
      const names: string[] = [];
      for await (const e of readTar(streamOf(tar))) names.push(e.header.name);
      expect(names).toContain("etc/.wh.old");
      expect(names).not.toContain("etc/old/a");

      await driver.create("n", "base", {});
      const size = await driver.applyDiff("n", "base", streamOf(tar));
      expect(size).toBe(await driver.diffSize("c", "base"));
      expect(size).toBe("new content".length + "a=22\n".length + "hello".length);
      // A layer tar carries whole seconds (as moby's does): the applied copy matches to the second.
      const want = await withDir("c", (d) => snapshot(d, sys, { wholeSeconds: true }));
      const got = await withDir("n", (d) => snapshot(d, sys, { wholeSeconds: true }));
      expect(got).toEqual(want);
      await withDir("n", (d) => expect(fs.lstatSync(path.join(d, "new-file"), { bigint: true }).mtimeNs % 1_000_000_000n).toBe(0n));
      expect(await driver.changes("n", "base")).toEqual(await driver.changes("c", "base"));
    });

    it("streams a Diff while another layer is created and applied from it (docker commit)", async () => {
      await applyBase();
      await driver.createReadWrite("c", "base", {});
      await withDir("c", (dir) => fs.writeFileSync(path.join(dir, "big"), Buffer.alloc(8 << 20, 7)));
      const diff = await driver.diff("c", "base");
      await driver.create("committed", "base", {});
      expect(await driver.applyDiff("committed", "base", diff)).toBe(8 << 20);
      await withDir("committed", (dir) => expect(fs.statSync(path.join(dir, "big")).size).toBe(8 << 20));
    });

    it("leaves a layer as it was when its ApplyDiff fails", async () => {
      await applyBase();
      await driver.create("l", "base", {});
      const before = await withDir("l", (d) => snapshot(d, sys, { dirMtimes: true }));
      const good = await makeTar([file("added-1", "one"), entry({ name: "etc/.wh.config" }), file("added-2", "x".repeat(5000))]);
      const truncated = good.subarray(0, 512 * 5 + 100);
      await expect(driver.applyDiff("l", "base", streamOf(truncated))).rejects.toThrow();
      expect(await withDir("l", (d) => snapshot(d, sys, { dirMtimes: true }))).toEqual(before);
    });

    it("refuses a duplicate create, a missing parent and unknown layers with clear errors", async () => {
      await driver.create("a", "", {});
      await expect(driver.create("a", "", {})).rejects.toThrow('Cannot create layer "a": it already exists');
      await expect(driver.create("b", "missing", {})).rejects.toThrow('"missing": it does not exist');
      expect(await driver.exists("b")).toBe(false);
      await expect(driver.get("nope", "")).rejects.toThrow('"nope": it does not exist');
      expect(await driver.exists("nope")).toBe(false);
    });

    it("removes a layer, and removing an unknown one succeeds", async () => {
      await applyBase();
      await driver.create("gone", "base", {});
      await driver.remove("gone");
      expect(await driver.exists("gone")).toBe(false);
      expect(await driver.exists("base")).toBe(true);
      await driver.remove("never-existed");
      const status = Object.fromEntries(await driver.status());
      expect(status["Backing Filesystem"]).toBeTruthy();
    });

    it("refuses to remove a layer others are built on, and leaves it whole", async () => {
      await applyBase();
      await driver.create("image-top", "base", {});
      await driver.createReadWrite("container", "base", {});
      await withDir("container", (dir) => fs.writeFileSync(path.join(dir, "written"), "by the container"));
      const before = await withDir("base", (d) => snapshot(d, sys, { dirMtimes: true }));
      const refused = await driver.remove("base").then(() => null, (err: unknown) => err);
      expect(refused).toBeInstanceOf(BusyError);
      expect((refused as Error).message).toBe('Cannot remove layer "base": layers "container", "image-top" are built on it');
      expect(await driver.exists("base")).toBe(true);
      expect(await withDir("base", (d) => snapshot(d, sys, { dirMtimes: true }))).toEqual(before);
      await withDir("container", (dir) => expect(fs.readFileSync(path.join(dir, "written"), "utf8")).toBe("by the container"));
      await driver.remove("container");
      await expect(driver.remove("base")).rejects.toThrow('Cannot remove layer "base": layer "image-top" is built on it');
    });

    it("removes a layer once its children are gone, also after a restart", async () => {
      await applyBase();
      await driver.create("mid", "base", {});
      await driver.create("top", "mid", {});
      await driver.cleanup();
      // A new driver on the same Home, as after a plugin restart: it must know the parents again.
      driver = await opts.newDriver(path.join(root, "home"));
      await expect(driver.remove("base")).rejects.toThrow('Cannot remove layer "base": layer "mid" is built on it');
      await expect(driver.remove("mid")).rejects.toThrow('layer "top" is built on it');
      await driver.remove("top");
      await driver.remove("mid");
      await driver.remove("base");
      for (const id of ["top", "mid", "base"]) expect(await driver.exists(id)).toBe(false);
      // The IDs are free again, with no parent remembered from before.
      await driver.create("base", "", {});
      await driver.create("mid", "", {});
      await driver.remove("base");
    });

    it("answers GetMetadata and Capabilities", async () => {
      await driver.create("m", "", {});
      expect(Object.keys(await driver.getMetadata("m")).length).toBeGreaterThan(0);
      expect(typeof driver.capabilities().ReproducesExactDiffs).toBe("boolean");
    });
  });
}
