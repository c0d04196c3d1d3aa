/** The erofs driver: the conformance suite, and what only it does (images, exact diffs, shared image mounts). */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initErofs } from "../drivers/erofs/driver.ts";
import { mountImage } from "../drivers/erofs/image-mounts.ts";
import { readTar } from "../src/archive/tar-reader.ts";
import type { Driver } from "../src/core/driver.ts";
import { silentLogger } from "../src/core/log.ts";
import { createSys } from "../src/sys/bun.ts";
import { baseLayerTar, runDriverSuite } from "./driver-suite.ts";
import { TEST_DRIVERS } from "./helpers/drivers.ts";
import { bytesOf, entry, file, makeTar, streamOf } from "./helpers/layer-tar.ts";
import { mountsBelow, unmountBelow } from "./helpers/mounts.ts";
import { snapshot } from "./helpers/tree.ts";

const sys = createSys();
const skip = TEST_DRIVERS.find((d) => d.name === "erofs")!.skip ?? undefined;

runDriverSuite({
  name: "erofs",
  sys,
  newDriver: (home) => initErofs({ home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger }),
  skip,
});

const isRoot = process.getuid?.() === 0;

describe(`erofs driver${skip ? ` (skipped: ${skip})` : ""}`, () => {
  let root: string;
  let home: string;
  let driver: Driver;
  beforeEach(async () => {
    if (skip) return;
    root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-erofs-drv-"));
    home = path.join(root, "home");
    driver = await initErofs({ home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger });
  });
  afterEach(async () => {
    if (skip) return;
    await driver.cleanup();
    unmountBelow(sys, root);
    fs.rmSync(root, { recursive: true, force: true });
  });
  const it = (name: string, fn: () => Promise<void>) => test.skipIf(!!skip)(name, fn, 60_000);
  /** Two image layers: "base" (the suite's base tar) and "mid" on it (one file, "mid"). */
  const baseAndMid = async () => {
    await driver.create("base", "", {});
    await driver.applyDiff("base", "", streamOf(await baseLayerTar()));
    await driver.create("mid", "base", {});
    await driver.applyDiff("mid", "base", streamOf(await makeTar([file("mid", "m")])));
  };
  /** erofs mounts under Home, by mount point. */
  const imageMounts = () => mountsBelow(home).filter((m) => m.fsType === "erofs").map((m) => path.relative(home, m.mountPoint)).sort();

  it("Diff of an applied layer is the applied tar, byte for byte, and DiffSize what ApplyDiff answered", async () => {
    const base = await baseLayerTar();
    await driver.create("base", "", {});
    const size = await driver.applyDiff("base", "", streamOf(base, 7_000));
    const top = await makeTar([file("etc/config", "changed"), entry({ name: "etc/old/.wh.a" }), file("z", "z".repeat(10_000))]);
    await driver.create("top", "base", {});
    expect(await driver.applyDiff("top", "base", streamOf(top))).toBe(7 + 10_000);
    const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
    expect(sha(await bytesOf(await driver.diff("base", "")))).toBe(sha(base));
    expect(sha(await bytesOf(await driver.diff("top", "")))).toBe(sha(top));
    expect(sha(await bytesOf(await driver.diff("top", "base")))).toBe(sha(top));
    expect(await driver.diffSize("base", "")).toBe(size);
    expect(await driver.diffSize("top", "base")).toBe(10_007);
    expect(driver.capabilities().ReproducesExactDiffs).toBe(true);
    // Trailing bytes after the end-of-archive blocks (GNU tar pads to 10 KiB records) are part of
    // the stream the daemon digested: they come back too.
    const padded = new Uint8Array(Math.ceil((top.byteLength + 1) / 10_240) * 10_240);
    padded.set(top);
    await driver.create("padded", "base", {});
    await driver.applyDiff("padded", "base", streamOf(padded, 3_000));
    expect(sha(await bytesOf(await driver.diff("padded", "")))).toBe(sha(padded));
    // Against another parent there is no kept tar: the naive diff compares the trees.
    const names: string[] = [];
    for await (const e of readTar(await driver.diff("top", "top"))) names.push(e.header.name);
    expect(names).toEqual([]);
  });

  it("mounts each image once for every layer above it, and unmounts it with the last Put", async () => {
    await baseAndMid();
    await driver.createReadWrite("c1", "mid", {});
    await driver.createReadWrite("c2", "mid", {});
    expect(imageMounts()).toEqual([]);
    const d1 = await driver.get("c1", "");
    const d2 = await driver.get("c2", "");
    expect(imageMounts()).toEqual(["base/image", "mid/image"]);
    fs.writeFileSync(path.join(d1, "only-c1"), "1");
    expect(fs.existsSync(path.join(d2, "only-c1"))).toBe(false);
    expect(fs.readFileSync(path.join(d2, "mid"), "utf8")).toBe("m");
    await driver.put("c1");
    expect(imageMounts()).toEqual(["base/image", "mid/image"]);
    await driver.put("c2");
    expect(imageMounts()).toEqual([]);
    expect(mountsBelow(home)).toEqual([]);
    // The container's write went to its upper dir.
    expect(fs.readFileSync(path.join(home, "c1", "diff", "only-c1"), "utf8")).toBe("1");
  });

  it("keeps an image layer as one image file and its tar; its root cannot be written; Remove leaves nothing", async () => {
    await driver.create("base", "", {});
    await driver.applyDiff("base", "", streamOf(await baseLayerTar()));
    expect(fs.readdirSync(path.join(home, "base")).sort()).toEqual(["layer.erofs", "layer.tar", "parent", "size"]);
    const usage = await driver.usage("base");
    expect(usage.inodes).toBe(2);
    expect(usage.size).toBeGreaterThan(0);
    const dir = await driver.get("base", "");
    try {
      expect(() => fs.writeFileSync(path.join(dir, "new"), "x")).toThrow(/EROFS|read-only/);
    } finally {
      await driver.put("base");
    }
    expect(Object.fromEntries(await driver.status())["Image mounts"]).toMatch(/file-backed|loop/);
    await driver.remove("base");
    expect(fs.readdirSync(home).filter((n) => !n.startsWith("."))).toEqual([]);
    expect(fs.readdirSync(path.join(home, ".tmp"))).toEqual([]);
  });

  it("commits a read-write layer into an image with the same tree", async () => {
    await driver.create("base", "", {});
    await driver.applyDiff("base", "", streamOf(await baseLayerTar()));
    await driver.createReadWrite("c", "base", {});
    const dir = await driver.get("c", "");
    fs.writeFileSync(path.join(dir, "added"), "a");
    fs.rmSync(path.join(dir, "etc/old"), { recursive: true });
    const before = snapshot(dir, sys, { dirMtimes: true });
    await driver.put("c");
    await driver.commit("c");
    expect(fs.existsSync(path.join(home, "c", "diff"))).toBe(false);
    expect(fs.existsSync(path.join(home, "c", "layer.erofs"))).toBe(true);
    const after = await driver.get("c", "");
    try {
      expect(snapshot(after, sys, { dirMtimes: true })).toEqual(before);
    } finally {
      await driver.put("c");
    }
    await driver.createReadWrite("child", "c", {});
    expect(await driver.changes("child", "c")).toEqual([]);
  });

  it("hands out a deep chain's mounts standing on the parent's view, released with the layer", async () => {
    await baseAndMid();
    await driver.createReadWrite("c", "mid", {});
    // As if the caller's mount(2) could not take the flat options.
    const [spec] = await driver.mounts("c", false, () => false);
    expect(spec.options).toEqual([`lowerdir=${path.join(home, "mid", "merged")}`, `upperdir=${path.join(home, "c", "diff")}`, `workdir=${path.join(home, "c", "work")}`]);
    const target = path.join(root, "deep-mnt");
    fs.mkdirSync(target);
    sys.mount("overlay", target, "overlay", 0, spec.options.join(","));
    try {
      expect(fs.readFileSync(path.join(target, "mid"), "utf8")).toBe("m");
      expect(fs.readFileSync(path.join(target, "bin/busybox"), "utf8")).toBe("busybox");
      fs.writeFileSync(path.join(target, "new"), "n");
    } finally {
      sys.umount2(target, 0);
    }
    expect(fs.readFileSync(path.join(home, "c", "diff", "new"), "utf8")).toBe("n");
    await driver.remove("c");
    expect(mountsBelow(home)).toEqual([]);
  });

  it("keeps the images Mounts handed out mounted across a restart, and releases them with Remove", async () => {
    await baseAndMid();
    await driver.createReadWrite("c", "mid", {});
    await driver.create("lone", "", {});
    await driver.applyDiff("lone", "", streamOf(await makeTar([file("lone", "l")])));
    // The caller (containerd's shim) mounts the overlay itself, outside Home.
    const [spec] = await driver.mounts("c", false);
    const target = path.join(root, "shim-rootfs");
    fs.mkdirSync(target);
    sys.mount("overlay", target, "overlay", 0, spec.options.join(","));
    // An image mounted for no read-write layer (as a crash mid-call leaves it) is not kept.
    const [loneSpec] = await driver.mounts("lone", true);
    expect(loneSpec.type).toBe("bind");
    try {
      expect(imageMounts()).toEqual(["base/image", "lone/image", "mid/image"]);
      // The process is killed (no Cleanup) and started again on the same Home.
      driver = await initErofs({ home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger });
      expect(imageMounts()).toEqual(["base/image", "mid/image"]);
      fs.writeFileSync(path.join(target, "after-restart"), "w");
      expect(fs.readFileSync(path.join(target, "mid"), "utf8")).toBe("m");
      expect(fs.readFileSync(path.join(target, "bin/busybox"), "utf8")).toBe("busybox");
    } finally {
      sys.umount2(target, 0);
    }
    expect(fs.readFileSync(path.join(home, "c", "diff", "after-restart"), "utf8")).toBe("w");
    await driver.remove("c");
    expect(imageMounts()).toEqual([]);
  });

  test.skipIf(!!skip || !isRoot)("mounts images through a loop device where the kernel cannot mount the file", async () => {
    await driver.create("base", "", {});
    await driver.applyDiff("base", "", streamOf(await baseLayerTar()));
    const target = path.join(root, "loop-mnt");
    fs.mkdirSync(target);
    mountImage(sys, path.join(home, "base", "layer.erofs"), target, "loop");
    try {
      const m = mountsBelow(root).find((x) => x.mountPoint === fs.realpathSync(target));
      expect(m?.fsType).toBe("erofs");
      expect(m?.source).toStartWith("/dev/loop");
      expect(fs.readFileSync(path.join(target, "bin/busybox"), "utf8")).toBe("busybox");
    } finally {
      sys.umount2(target, 0);
    }
  });
});
