/**
 * dockerd --userns-remap: Init carries UIDMaps/GIDMaps, and every driver must keep container ids in
 * layer tars and host ids on disk. The uid and gid maps differ on purpose, so a swapped pair fails.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { readTar } from "../src/archive/tar-reader.ts";
import type { Driver, DriverConfig, IdMap } from "../src/core/driver.ts";
import "../src/drivers.ts";
import { InvalidLayerError } from "../src/core/errors.ts";
import { silentLogger } from "../src/core/log.ts";
import { Plugin } from "../src/graphdriver/plugin.ts";
import { createSys } from "../src/sys/bun.ts";
import { bytesOf, entry, file, makeTar, streamOf } from "./helpers/layer-tar.ts";
import { TEST_DRIVERS } from "./helpers/drivers.ts";

const sys = createSys();
const isRoot = process.getuid?.() === 0;
const UID_BASE = 100_000;
const GID_BASE = 200_000;
const SIZE = 65_536;
const uidMaps: IdMap[] = [{ container_id: 0, host_id: UID_BASE, size: SIZE }];
const gidMaps: IdMap[] = [{ container_id: 0, host_id: GID_BASE, size: SIZE }];
const hasSetpriv = spawnSync("setpriv", ["--version"]).status === 0;


interface Case {
  name: string;
  init: (config: DriverConfig) => Promise<Driver>;
  skip?: string;
}

const cases: Case[] = TEST_DRIVERS.map((d) => ({
  name: d.name,
  init: d.init,
  skip: (isRoot ? d.skip : (d.name === "overlay" ? "chown to the remapped ids and overlay mounts need root" : "chown to the remapped ids needs root")) ?? undefined,
}));

/** [uid, gid] of a path, not following a symlink. */
function owner(p: string): [number, number] {
  const st = fs.lstatSync(p);
  return [st.uid, st.gid];
}

/** name → [uid, gid] of every entry of a layer tar. */
async function tarOwners(stream: ReadableStream<Uint8Array>): Promise<Record<string, [number, number]>> {
  const out: Record<string, [number, number]> = {};
  for await (const e of readTar(stream)) {
    out[e.header.name.replace(/\/$/, "")] = [e.header.uid, e.header.gid];
    await e.skip();
  }
  return out;
}

/** Whether the remapped root (as a process with only those ids) can list `dir`: what runc needs of a rootfs path. */
function remappedRootCanList(dir: string): boolean {
  const res = spawnSync("setpriv", [`--reuid=${UID_BASE}`, `--regid=${GID_BASE}`, "--clear-groups", "ls", dir]);
  return res.status === 0;
}

/** A base layer tar: root 0:0, a file of root, a directory and file of uid/gid 1000. */
const baseTar = () =>
  makeTar([
    entry({ name: "etc", type: "directory" }),
    file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
    entry({ name: "home/user", type: "directory", uid: 1000, gid: 1000 }),
    file("home/user/notes", "hi\n", { uid: 1000, gid: 1000 }),
  ]);

for (const c of cases) {
  describe(`userns-remap (${c.name})`, () => {
    let root: string;
    let driver: Driver;
    beforeEach(async () => {
      if (c.skip) return;
      root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-userns-"));
      driver = await c.init({ home: path.join(root, "home"), options: {}, uidMaps, gidMaps, sys, log: silentLogger });
    });
    afterEach(async () => {
      if (c.skip) return;
      await driver.cleanup();
      fs.rmSync(root, { recursive: true, force: true });
    });
    const it = (name: string, fn: () => Promise<void>) => test.skipIf(!!c.skip)(c.skip ? `${name} (skipped: ${c.skip})` : name, fn);

    it("owns a new base layer's root by the remapped root", async () => {
      await driver.create("base", "", {});
      const dir = await driver.get("base", "");
      try {
        expect(owner(dir)).toEqual([UID_BASE, GID_BASE]);
      } finally {
        await driver.put("base");
      }
    });

    it("shifts ownership into the host range on ApplyDiff and back on Diff", async () => {
      await driver.create("base", "", {});
      const applied = await baseTar();
      await driver.applyDiff("base", "", streamOf(applied));
      const dir = await driver.get("base", "");
      try {
        expect(owner(dir)).toEqual([UID_BASE, GID_BASE]);
        expect(owner(path.join(dir, "etc/passwd"))).toEqual([UID_BASE, GID_BASE]);
        // "home" is implied by the tar: owned by the container's root, as moby makes it.
        expect(owner(path.join(dir, "home"))).toEqual([UID_BASE, GID_BASE]);
        expect(owner(path.join(dir, "home/user"))).toEqual([UID_BASE + 1000, GID_BASE + 1000]);
        expect(owner(path.join(dir, "home/user/notes"))).toEqual([UID_BASE + 1000, GID_BASE + 1000]);
      } finally {
        await driver.put("base");
      }
      const diff = await bytesOf(await driver.diff("base", ""));
      const exact = driver.capabilities().ReproducesExactDiffs;
      // An exact diff is the applied tar itself: container ids, and only the entries it listed.
      if (exact) expect(Buffer.compare(Buffer.from(diff), Buffer.from(applied))).toBe(0);
      expect(await tarOwners(streamOf(diff))).toEqual({
        etc: [0, 0],
        "etc/passwd": [0, 0],
        ...(exact ? {} : { home: [0, 0] as [number, number] }),
        "home/user": [1000, 1000],
        "home/user/notes": [1000, 1000],
      });
    });

    it("gives a child layer the remapped root and diffs what a container wrote in container ids", async () => {
      await driver.create("base", "", {});
      await driver.applyDiff("base", "", streamOf(await baseTar()));
      await driver.createReadWrite("ctr", "base", {});
      const dir = await driver.get("ctr", "");
      try {
        expect(owner(dir)).toEqual([UID_BASE, GID_BASE]);
        // What a process of the container running as uid 1000 would leave behind.
        fs.writeFileSync(path.join(dir, "home/user/new"), "x");
        fs.chownSync(path.join(dir, "home/user/new"), UID_BASE + 1000, GID_BASE + 1000);
        fs.writeFileSync(path.join(dir, "rootfile"), "y");
        fs.chownSync(path.join(dir, "rootfile"), UID_BASE, GID_BASE);
        fs.rmSync(path.join(dir, "etc/passwd"));
      } finally {
        await driver.put("ctr");
      }
      expect((await driver.changes("ctr", "base")).sort((a, b) => a.Path.localeCompare(b.Path))).toEqual([
        { Path: "/etc", Kind: 0 },
        { Path: "/etc/passwd", Kind: 2 },
        // A directory holding a change counts as modified, as in moby's ChangesDirs.
        { Path: "/home", Kind: 0 },
        { Path: "/home/user", Kind: 0 },
        { Path: "/home/user/new", Kind: 1 },
        { Path: "/rootfile", Kind: 1 },
      ]);
      const owners = await tarOwners(await driver.diff("ctr", "base"));
      expect(owners["home/user/new"]).toEqual([1000, 1000]);
      expect(owners.rootfile).toEqual([0, 0]);
      expect(owners["etc/.wh.passwd"]).toEqual([0, 0]);

      // docker commit: the Diff applied to a new image layer lands in the host range again.
      await driver.create("committed", "base", {});
      await driver.applyDiff("committed", "base", await driver.diff("ctr", "base"));
      const committed = await driver.get("committed", "");
      try {
        expect(owner(committed)).toEqual([UID_BASE, GID_BASE]);
        expect(owner(path.join(committed, "home/user/new"))).toEqual([UID_BASE + 1000, GID_BASE + 1000]);
        expect(fs.existsSync(path.join(committed, "etc/passwd"))).toBe(false);
      } finally {
        await driver.put("committed");
      }
    });

    it("refuses a layer with an id outside the maps and leaves the layer as it was", async () => {
      await driver.create("base", "", {});
      await driver.applyDiff("base", "", streamOf(await baseTar()));
      const bad = await makeTar([file("ok", "1"), file("outside", "2", { uid: SIZE + 5 })]);
      const err = await driver.applyDiff("base", "", streamOf(bad)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidLayerError);
      expect((err as Error).message).toBe(`Container UID ${SIZE + 5} cannot be mapped to a host UID`);
      const badGid = await makeTar([file("outside", "2", { gid: SIZE })]);
      await expect(driver.applyDiff("base", "", streamOf(badGid))).rejects.toThrow(`Container GID ${SIZE} cannot be mapped to a host GID`);
      const dir = await driver.get("base", "");
      try {
        expect(fs.readdirSync(dir).sort()).toEqual(["etc", "home"]);
      } finally {
        await driver.put("base");
      }
    });

    it("reports layer directories in GetMetadata owned by the remapped root", async () => {
      await driver.create("base", "", {});
      await driver.createReadWrite("ctr", "base", {});
      const meta = await driver.getMetadata("ctr");
      const dirs = Object.entries(meta).filter(([k]) => k !== "LowerDir" && k !== "MergedDir");
      expect(dirs.length).toBeGreaterThan(0);
      for (const [key, dir] of dirs) expect([key, ...owner(dir)]).toEqual([key, UID_BASE, GID_BASE]);
      for (const dir of (meta.LowerDir ?? "").split(":").filter(Boolean)) expect(owner(dir)).toEqual([UID_BASE, GID_BASE]);
    });

    test.skipIf(!!c.skip || !hasSetpriv)(
      c.skip || !hasSetpriv ? `lets the remapped root reach a layer's root (skipped: ${c.skip ?? "setpriv is missing"})` : "lets the remapped root reach a layer's root",
      async () => {
        // runc, already in the user namespace, resolves the rootfs path as the remapped root: every
        // directory on the way must let it through (moby makes them 0710 with the remapped root's group).
        fs.chmodSync(root, 0o755);
        await driver.create("base", "", {});
        await driver.createReadWrite("ctr", "base", {});
        for (const id of ["base", "ctr"]) {
          const dir = await driver.get(id, "");
          try {
            expect([id, remappedRootCanList(dir)]).toEqual([id, true]);
          } finally {
            await driver.put(id);
          }
        }
      },
    );
  });
}

describe("userns-remap through Init", () => {
  test.skipIf(!isRoot)(isRoot ? "hands Init's maps to the driver" : "hands Init's maps to the driver (skipped: chown needs root)", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-userns-init-"));
    const plugin = new Plugin({ sys, stateDir: path.join(root, "state"), defaultDriver: "vfs", log: silentLogger });
    try {
      await plugin.init({ Home: path.join(root, "home"), Opts: ["strata.driver=vfs"], UIDMaps: uidMaps, GIDMaps: gidMaps });
      const driver = plugin.current();
      await driver.create("base", "", {});
      expect(owner(await driver.get("base", ""))).toEqual([UID_BASE, GID_BASE]);
      await driver.put("base");
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
