/**
 * Size-limited layers of the overlay driver: `--storage-opt size=` and `strata.size` give a
 * read-write layer its own ext4 image on a loop device, so writes past the limit fail with ENOSPC
 * on any backing filesystem.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Driver } from "../src/core/driver.ts";
import { InvalidRequestError } from "../src/core/errors.ts";
import { silentLogger } from "../src/core/log.ts";
import { createSys } from "../src/sys/bun.ts";
import { initOverlay } from "../drivers/overlay/driver.ts";
import { MIN_SIZE, findMkfs, parseSize } from "../drivers/overlay/quota.ts";
import { runDriverSuite } from "./driver-suite.ts";
import { file, makeTar, streamOf } from "./helpers/layer-tar.ts";
import { mountsBelow, unmountBelow } from "./helpers/mounts.ts";

const sys = createSys();
const MiB = 1024 * 1024;

/** Why size-limited layers cannot be tested here, or undefined when they can. */
function _unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "loop devices and mounts need root";
  if (findMkfs() === null) return "mkfs.ext4 (e2fsprogs) is not installed";
  if (!fs.existsSync("/dev/loop-control")) return "this host has no /dev/loop-control";
  return undefined;
}
const UNAVAILABLE = _unavailable();

function newDriver(home: string, options: Record<string, string> = {}): Promise<Driver> {
  return initOverlay({ home, options, uidMaps: [], gidMaps: [], sys, log: silentLogger });
}

/** Loop devices whose backing file is under `dir`. */
function _loopsBackedUnder(dir: string): string[] {
  const out: string[] = [];
  for (const dev of fs.readdirSync("/sys/block").filter((d) => d.startsWith("loop"))) {
    const backing = path.join("/sys/block", dev, "loop", "backing_file");
    if (fs.existsSync(backing) && fs.readFileSync(backing, "utf8").trim().startsWith(dir)) out.push(dev);
  }
  return out;
}


describe("parseSize", () => {
  test("reads sizes as docker's --storage-opt size does: binary units, any case, optional i and b", () => {
    expect(parseSize("1048576")).toBe(MiB);
    expect(parseSize("512k")).toBe(512 * 1024);
    expect(parseSize("20M")).toBe(20 * MiB);
    expect(parseSize("20MB")).toBe(20 * MiB);
    expect(parseSize("20mib")).toBe(20 * MiB);
    expect(parseSize("2G")).toBe(2 * 1024 * MiB);
    expect(parseSize("1.5g")).toBe(1536 * MiB);
    expect(parseSize("1T")).toBe(1024 * 1024 * MiB);
  });

  test("refuses what is not a size, naming it", () => {
    for (const bad of ["", "big", "-1G", "10X", "1e9", "10 GBs", "0x10"]) {
      expect(() => parseSize(bad)).toThrow(InvalidRequestError);
    }
    expect(() => parseSize("lots")).toThrow('Invalid size "lots"');
  });
});

describe("size-limited layers", () => {
  let root: string;
  let home: string;
  let driver: Driver | undefined;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-quota-"));
    home = path.join(root, "home");
  });
  afterEach(async () => {
    await driver?.cleanup().catch(() => {});
    driver = undefined;
    unmountBelow(sys, root);
    fs.rmSync(root, { recursive: true, force: true });
  });
  const it = (name: string, fn: () => Promise<void>) =>
    test.skipIf(!!UNAVAILABLE)(UNAVAILABLE ? `${name} (skipped: ${UNAVAILABLE})` : name, fn, 60_000);

  /** A base image layer holding one file, and a size-limited container layer on it. */
  async function container(d: Driver, size = "32M"): Promise<void> {
    await d.create("base", "", {});
    await d.applyDiff("base", "", streamOf(await makeTar([file("etc/os", "busybox\n")])));
    await d.createReadWrite("c-init", "base", { storageOpt: { size } });
    await d.createReadWrite("c", "c-init", { storageOpt: { size } });
  }

  it("fails writes past the size with ENOSPC, and allows writes within it", async () => {
    driver = await newDriver(home);
    await container(driver);
    const merged = await driver.get("c", "");
    try {
      expect(fs.readFileSync(path.join(merged, "etc/os"), "utf8")).toBe("busybox\n");
      fs.writeFileSync(path.join(merged, "small"), Buffer.alloc(8 * MiB, 1));
      let error: unknown;
      try {
        const fd = fs.openSync(path.join(merged, "big"), "w");
        try {
          for (let i = 0; i < 40; i++) fs.writeSync(fd, Buffer.alloc(MiB, 2));
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        error = err;
      }
      expect((error as NodeJS.ErrnoException)?.code).toBe("ENOSPC");
      expect(fs.statSync(path.join(merged, "small")).size).toBe(8 * MiB);
    } finally {
      await driver.put("c");
    }
    // The backing filesystem holds none of it: the layer's files are inside its image.
    const mounts = mountsBelow(home);
    expect(mounts.filter((m) => m.fsType === "ext4" && m.source.startsWith("/dev/loop")).map((m) => path.basename(m.mountPoint)).sort())
      .toEqual(["c", "c-init"]);
    expect(fs.statSync(path.join(home, ".quota", "c.img")).size).toBe(32 * MiB);
  });

  it("applies a diff into a size-limited layer (staged inside its own filesystem), and refuses one past the size", async () => {
    driver = await newDriver(home);
    await container(driver);
    expect(await driver.applyDiff("c", "c-init", streamOf(await makeTar([file("added", "x".repeat(1000))])))).toBe(1000);
    expect(fs.readFileSync(path.join(home, "c", "diff", "added"), "utf8")).toBe("x".repeat(1000));
    const big = await makeTar([file("big", "y".repeat(40 * MiB))]);
    await expect(driver.applyDiff("c", "c-init", streamOf(big))).rejects.toThrow("ENOSPC");
    expect(fs.readdirSync(path.join(home, "c", "diff")).sort()).toEqual(["added"]);
    expect(fs.readdirSync(path.join(home, "c", ".tmp"))).toEqual([]);
  });

  it("diffs a size-limited layer like any other", async () => {
    driver = await newDriver(home);
    await container(driver);
    const merged = await driver.get("c", "");
    fs.writeFileSync(path.join(merged, "hello"), "world");
    fs.rmSync(path.join(merged, "etc/os"));
    await driver.put("c");
    const changes = await driver.changes("c", "");
    expect(changes.map((c) => `${c.Kind}:${c.Path}`).sort()).toEqual(["0:/etc", "1:/hello", "2:/etc/os"]);
    expect(await driver.diffSize("c", "")).toBe(5);
    const meta = await driver.getMetadata("c");
    expect(meta.UpperDir).toBe(path.join(home, "c", "diff"));
  });

  it("makes sparse images: a 2G limit takes about a MiB of the backing filesystem", async () => {
    driver = await newDriver(home);
    await driver.create("img", "", {});
    await driver.createReadWrite("big", "img", { storageOpt: { size: "2G" } });
    const st = fs.statSync(path.join(home, ".quota", "big.img"));
    expect(st.size).toBe(2048 * MiB);
    expect(st.blocks * 512).toBeLessThan(4 * MiB);
  });

  it("releases the image, the mount and the loop device on Remove", async () => {
    driver = await newDriver(home);
    await container(driver);
    await driver.get("c", "");
    expect(_loopsBackedUnder(root).length).toBe(2);
    await driver.remove("c");
    await driver.remove("c-init");
    expect(await driver.exists("c")).toBe(false);
    expect(await driver.exists("c-init")).toBe(false);
    expect(mountsBelow(home)).toEqual([]);
    expect(fs.readdirSync(path.join(home, ".quota"))).toEqual([]);
    expect(fs.readdirSync(path.join(home, ".tmp"))).toEqual([]);
    expect(fs.existsSync(path.join(home, "c"))).toBe(false);
    // Autoclear detaches the device once its filesystem is unmounted; the kernel may take a moment.
    for (let i = 0; i < 50 && _loopsBackedUnder(root).length > 0; i++) await Bun.sleep(20);
    expect(_loopsBackedUnder(root)).toEqual([]);
    expect(await driver.exists("base")).toBe(true);
  });

  it("creates and removes 16 size-limited layers at once, each on its own loop device", async () => {
    driver = await newDriver(home);
    await driver.create("img", "", {});
    const ids = Array.from({ length: 16 }, (_, i) => `c${i}`);
    await Promise.all(ids.map((id) => driver!.createReadWrite(id, "img", { storageOpt: { size: "16M" } })));
    const devices = mountsBelow(home).filter((m) => m.fsType === "ext4").map((m) => m.source);
    expect(devices.length).toBe(16);
    expect(new Set(devices).size).toBe(16);
    await Promise.all(ids.map(async (id) => {
      const dir = await driver!.get(id, "");
      fs.writeFileSync(path.join(dir, "own"), id);
      await driver!.put(id);
    }));
    for (const id of ids) expect(fs.readFileSync(path.join(home, id, "diff", "own"), "utf8")).toBe(id);
    await Promise.all(ids.map((id) => driver!.remove(id)));
    expect(mountsBelow(home)).toEqual([]);
    expect(fs.readdirSync(path.join(home, ".quota"))).toEqual([]);
  });

  it("takes strata.size as the default for read-write layers only", async () => {
    driver = await newDriver(home, { size: "24M" });
    await driver.create("img", "", {});
    await driver.createReadWrite("rw", "img", {});
    await driver.createReadWrite("big", "img", { storageOpt: { size: "48M" } });
    expect(fs.readdirSync(path.join(home, ".quota")).sort()).toEqual(["big.img", "rw.img"]);
    expect(fs.statSync(path.join(home, ".quota", "rw.img")).size).toBe(24 * MiB);
    expect(fs.statSync(path.join(home, ".quota", "big.img")).size).toBe(48 * MiB);
    const status = Object.fromEntries(await driver.status());
    expect(status["Size limits"]).toBe(`ext4 images on loop devices (default ${24 * MiB} bytes)`);
  });

  it("refuses a size on image layers, below the minimum, or that is not a size; nothing is left", async () => {
    driver = await newDriver(home);
    await driver.create("img", "", {});
    await expect(driver.create("ro", "img", { storageOpt: { size: "1G" } })).rejects.toThrow(
      'Cannot create layer "ro": the size option is only supported for read-write layers',
    );
    await expect(driver.createReadWrite("tiny", "img", { storageOpt: { size: "1M" } })).rejects.toThrow(
      `Cannot create layer "tiny": size ${MiB} is below the minimum of ${MIN_SIZE / MiB} MiB`,
    );
    await expect(driver.createReadWrite("bad", "img", { storageOpt: { size: "lots" } })).rejects.toThrow('Invalid size "lots"');
    await expect(driver.createReadWrite("odd", "img", { storageOpt: { inodes: "5" } })).rejects.toThrow('unknown storage option "inodes"');
    for (const id of ["ro", "tiny", "bad", "odd"]) expect(await driver.exists(id)).toBe(false);
    expect(fs.readdirSync(path.join(home, ".quota"))).toEqual([]);
    expect(fs.readdirSync(path.join(home, ".tmp"))).toEqual([]);
    await expect(newDriver(path.join(root, "other"), { size: "huge" })).rejects.toThrow("Invalid option strata.size=huge");
  });

  it("keeps layer filesystems mounted across Cleanup and a restart, and mounts them again after a reboot", async () => {
    driver = await newDriver(home);
    await container(driver);
    const merged = await driver.get("c", "");
    fs.writeFileSync(path.join(merged, "kept"), "data");
    await driver.put("c");
    await driver.cleanup();
    // A plugin restart with the host up: the filesystems are still mounted and adopted as they are.
    driver = await newDriver(home);
    expect(await driver.exists("c")).toBe(true);
    expect(fs.readFileSync(path.join(home, "c", "diff", "kept"), "utf8")).toBe("data");
    // A reboot: nothing is mounted any more; Init mounts every image again.
    await driver.cleanup();
    unmountBelow(sys, home);
    expect(fs.readdirSync(path.join(home, "c"))).toEqual([]);
    driver = await newDriver(home);
    expect(await driver.exists("c")).toBe(true);
    expect(await driver.exists("c-init")).toBe(true);
    const again = await driver.get("c", "");
    expect(fs.readFileSync(path.join(again, "kept"), "utf8")).toBe("data");
    expect(fs.readFileSync(path.join(again, "etc/os"), "utf8")).toBe("busybox\n");
    await driver.put("c");
  });

  it("finishes or undoes creates and removes a crash cut short", async () => {
    driver = await newDriver(home);
    await container(driver);
    await driver.cleanup();
    driver = undefined;
    unmountBelow(sys, home);
    // A create that crashed after placing its image, before making the directory: the image is complete.
    fs.rmdirSync(path.join(home, "c"));
    // A remove that crashed after unmounting, before the image left: the layer comes back whole.
    // (c-init stays as the reboot left it: unmounted, its image in place.)
    // An empty directory with no image and no link is what a remove left after moving its image away.
    fs.mkdirSync(path.join(home, "leftover"));
    // A staging image of an unfinished create.
    fs.writeFileSync(path.join(home, ".tmp", "new-x-1-1.img"), "");
    driver = await newDriver(home);
    expect(await driver.exists("c")).toBe(true);
    expect(await driver.exists("c-init")).toBe(true);
    expect(fs.existsSync(path.join(home, "leftover"))).toBe(false);
    expect(fs.readdirSync(path.join(home, ".tmp"))).toEqual([]);
    const merged = await driver.get("c", "");
    expect(fs.readFileSync(path.join(merged, "etc/os"), "utf8")).toBe("busybox\n");
    await driver.put("c");
  });
});

runDriverSuite({
  name: "overlay (strata.size: every read-write layer size-limited)",
  sys,
  newDriver: (home) => newDriver(home, { size: "64M" }),
  skip: UNAVAILABLE,
});
