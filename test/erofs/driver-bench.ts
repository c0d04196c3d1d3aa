/**
 * ApplyDiff, DiffSize, Diff and Remove of one image layer on the erofs driver beside the overlay
 * driver, with the disk space and inodes each layer takes. Not a test; run from the repo root (as root):
 *   node_modules/.bin/bun test/erofs/driver-bench.ts [dir]
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { initErofs } from "../../drivers/erofs/driver.ts";
import { initOverlay } from "../../drivers/overlay/driver.ts";
import type { Driver, DriverConfig } from "../../src/core/driver.ts";
import { silentLogger } from "../../src/core/log.ts";
import { createSys } from "../../src/sys/bun.ts";
import { du, inodes, mixedTree, smallTree, tarBytes } from "../helpers/bench-trees.ts";
import { streamOf } from "../helpers/layer-tar.ts";

const sys = createSys();
const ms = async (fn: () => Promise<unknown>) => {
  const t0 = performance.now();
  await fn();
  return Math.round(performance.now() - t0);
};

const base = process.argv[2] ?? os.tmpdir();
const root = fs.mkdtempSync(path.join(base, "strata-erofs-dbench-"));
console.log("tree       driver   apply ms  diffsize ms  diff ms  remove ms  layer MB  inodes   (tar MB)");
try {
  for (const [name, items] of [["10k small", smallTree()], ["mixed 8k", mixedTree({ symlinks: false })]] as const) {
    const tar = await tarBytes(items);
    for (const [dname, init] of [["overlay", initOverlay], ["erofs", initErofs]] as const) {
      const home = path.join(root, dname);
      const config: DriverConfig = { home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger };
      const driver: Driver = await init(config);
      await driver.create("l", "", {});
      const apply = await ms(() => driver.applyDiff("l", "", streamOf(tar)));
      spawnSync("sync");
      const size = du(path.join(home, "l"));
      const count = inodes(path.join(home, "l"));
      const diffSize = await ms(() => driver.diffSize("l", ""));
      const diff = await ms(async () => { for await (const _ of await driver.diff("l", "")) { /* drain */ } });
      const remove = await ms(() => driver.remove("l"));
      await driver.cleanup();
      console.log(`${name.padEnd(10)} ${dname.padEnd(8)} ${String(apply).padStart(8)} ${String(diffSize).padStart(12)} ${String(diff).padStart(8)} ${String(remove).padStart(10)} ${(size / 1e6).toFixed(1).padStart(9)} ${String(count).padStart(7)}   (${(tar.byteLength / 1e6).toFixed(1)})`);
      fs.rmSync(home, { recursive: true, force: true });
    }
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
