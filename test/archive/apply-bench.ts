/**
 * Throughput of the layer operations on real files: apply, changes, export and copy of a tree of
 * 10k small files and of one 500 MB file. Not a test; run from the repo root (as root):
 *   node_modules/.bin/bun test/archive/apply-bench.ts [dir]
 *   node_modules/.bin/deno run -A test/archive/apply-bench.ts [dir]
 * `dir` (default: the OS temp dir) picks the filesystem measured.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { applyLayer } from "../../src/archive/apply.ts";
import { changesDirs } from "../../src/archive/changes.ts";
import { copyTree } from "../../src/archive/copy-tree.ts";
import { exportChanges } from "../../src/archive/export.ts";
import type { Sys } from "../../src/sys/types.ts";
import { bigFile, smallTree, tarOf } from "../helpers/bench-trees.ts";

const SMALL_FILES = 10_000;
const BIG_FILE = 500 * 1000 * 1000;

// A bench script, not library code: it may pick its runtime's adapter itself.
const sys: Sys = "Bun" in globalThis
  ? (await import("../../src/sys/bun.ts")).createSys()
  : (await import("../../src/sys/deno.ts")).createSys();

async function timed<T>(what: string, bytes: number, files: number, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await fn();
  const s = (performance.now() - t0) / 1000;
  const rate = bytes ? `${(bytes / s / 1e6).toFixed(0)} MB/s` : "";
  const perFile = files ? `${Math.round(files / s)} files/s` : "";
  console.log(`${what.padEnd(36)} ${s.toFixed(2).padStart(6)} s  ${rate.padStart(10)}  ${perFile}`);
  return out;
}

async function drain(stream: ReadableStream<Uint8Array>): Promise<number> {
  const reader = stream.getReader();
  let n = 0;
  for (let r = await reader.read(); !r.done; r = await reader.read()) n += r.value.byteLength;
  return n;
}

const base = process.argv[2] ?? os.tmpdir();
const root = fs.mkdtempSync(path.join(base, "strata-bench-"));
console.log(`runtime ${sys.runtime}, filesystem under ${root}`);
try {
  for (const [name, entries, bytes, files] of [["10k small files", smallTree(SMALL_FILES), SMALL_FILES * 1000, SMALL_FILES], ["one 500 MB file", bigFile(BIG_FILE), BIG_FILE, 1]] as const) {
    const src = path.join(root, `${name.split(" ")[0]}-src`);
    const copy = path.join(root, `${name.split(" ")[0]}-copy`);
    fs.mkdirSync(src);
    await timed(`applyLayer (${name})`, bytes, files, () => applyLayer(src, tarOf(entries), { sys, whiteouts: "delete" }));
    await timed(`copyTree (${name})`, bytes, files, () => copyTree(src, copy, sys));
    // The same copy by coreutils, for scale: the disk, not JavaScript, sets most of these numbers.
    await timed(`  cp -a, for reference`, bytes, files, async () => {
      if (spawnSync("cp", ["-a", src, `${copy}-cp`]).status !== 0) throw new Error("cp -a failed");
    });
    fs.rmSync(`${copy}-cp`, { recursive: true });
    const changes = await timed(`changesDirs vs nothing (${name})`, 0, files, () => changesDirs(src, null, sys));
    const same = await timed(`changesDirs vs copy (${name})`, 0, files, () => changesDirs(copy, src, sys));
    if (same.length !== 0) throw new Error(`copy differs: ${JSON.stringify(same.slice(0, 5))}`);
    await timed(`exportChanges (${name})`, bytes, files, () => drain(exportChanges(src, changes, sys)));
    fs.rmSync(src, { recursive: true });
    fs.rmSync(copy, { recursive: true });
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
