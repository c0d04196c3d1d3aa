/**
 * The EROFS writer beside the directory apply: time, MB/s, and the space each takes, for a tree
 * of 10k small files, a mixed tree and one 500 MB file. Not a test; run from the repo root (as root):
 *   node_modules/.bin/bun test/erofs/erofs-bench.ts [dir]
 *   node_modules/.bin/deno run -A test/erofs/erofs-bench.ts [dir]
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { applyLayer } from "../../src/archive/apply.ts";
import { writeImageFromTar } from "../../src/erofs/from-tar.ts";
import type { Sys } from "../../src/sys/types.ts";
import { bigFile, du, inodes as countInodes, mixedTree, smallTree, tarOf } from "../helpers/bench-trees.ts";

// A bench script, not library code: it may pick its runtime's adapter itself.
const sys: Sys = "Bun" in globalThis
  ? (await import("../../src/sys/bun.ts")).createSys()
  : (await import("../../src/sys/deno.ts")).createSys();

const base = process.argv[2] ?? os.tmpdir();
const root = fs.mkdtempSync(path.join(base, "strata-erofs-bench-"));
console.log(`runtime ${sys.runtime}, filesystem under ${root}`);
console.log(`${"tree".padEnd(16)} ${"tar MB".padStart(8)} ${"apply s".padStart(8)} ${"MB/s".padStart(6)} ${"dir MB".padStart(7)} ${"inodes".padStart(7)} | ${"erofs s".padStart(8)} ${"MB/s".padStart(6)} ${"image MB".padStart(9)} ${"vs tar".padStart(7)}`);
try {
  for (const [name, entries] of [["10k small files", smallTree()], ["mixed 8k files", mixedTree()], ["one 500 MB file", bigFile(500_000_000)]] as const) {
    const dir = path.join(root, "dir");
    fs.mkdirSync(dir);
    const tarA = { bytes: 0 };
    let t0 = performance.now();
    await applyLayer(dir, tarOf(entries, tarA), { sys, whiteouts: "overlay" });
    spawnSync("sync");
    const applyS = (performance.now() - t0) / 1000;
    const dirBytes = du(dir);
    const inodes = countInodes(dir);
    fs.rmSync(dir, { recursive: true });

    const image = path.join(root, "layer.erofs");
    const tarB = { bytes: 0 };
    t0 = performance.now();
    const stats = await writeImageFromTar(tarOf(entries, tarB), image, { sync: true });
    const erofsS = (performance.now() - t0) / 1000;
    const fsck = spawnSync("fsck.erofs", [image], { encoding: "utf8" });
    if (fsck.status !== 0) throw new Error(`fsck.erofs failed: ${fsck.stderr}`);
    fs.rmSync(image);

    const mb = (n: number) => (n / 1e6).toFixed(1);
    console.log(`${name.padEnd(16)} ${mb(tarB.bytes).padStart(8)} ${applyS.toFixed(2).padStart(8)} ${(tarA.bytes / 1e6 / applyS).toFixed(0).padStart(6)} ${mb(dirBytes).padStart(7)} ${String(inodes).padStart(7)} | ${erofsS.toFixed(2).padStart(8)} ${(tarB.bytes / 1e6 / erofsS).toFixed(0).padStart(6)} ${mb(stats.bytes).padStart(9)} ${`${((stats.bytes / tarB.bytes) * 100).toFixed(0)}%`.padStart(7)}`);
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
