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
import { TarWriter } from "../../src/archive/tar-writer.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import type { Sys } from "../../src/sys/types.ts";

const SMALL_FILES = 10_000;
const BIG_FILE = 500 * 1000 * 1000;
const CHUNK = 25_000; // what the daemon's chunked upload delivers

// A bench script, not library code: it may pick its runtime's adapter itself.
const sys: Sys = "Bun" in globalThis
  ? (await import("../../src/sys/bun.ts")).createSys()
  : (await import("../../src/sys/deno.ts")).createSys();

const header = (h: Partial<TarHeader> & { name: string }): TarHeader => ({
  type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 1_600_000_000, nsec: 1 },
  linkname: "", devmajor: 0, devminor: 0, xattrs: new Map(), ...h,
});

/** A tar stream made on the fly, re-chunked to the daemon's chunk size; never held whole in memory. */
function tarOf(entries: () => AsyncIterable<readonly [TarHeader, AsyncIterable<Uint8Array> | Uint8Array | undefined]>): ReadableStream<Uint8Array> {
  const writer = new TarWriter();
  (async () => {
    for await (const [h, body] of entries()) await writer.add(h, body);
    await writer.finish();
  })().catch((err) => writer.abort(err));
  const reader = writer.stream.getReader();
  let pending: Uint8Array | undefined;
  return new ReadableStream({
    async pull(c) {
      if (!pending || pending.byteLength === 0) {
        const r = await reader.read();
        if (r.done) return c.close();
        pending = r.value;
      }
      c.enqueue(pending.slice(0, CHUNK));
      pending = pending.subarray(CHUNK);
    },
  });
}

async function* smallTree() {
  for (let d = 0; d < 100; d++) yield [header({ name: `d${d}/`, type: "directory", mode: 0o755 }), undefined] as const;
  const body = new TextEncoder().encode("x".repeat(1000));
  for (let i = 0; i < SMALL_FILES; i++) yield [header({ name: `d${i % 100}/f${i}`, size: body.byteLength }), body] as const;
}

async function* bigFile() {
  const block = new Uint8Array(1 << 20).fill(7);
  async function* body() {
    for (let left = BIG_FILE; left > 0; left -= block.byteLength) yield left >= block.byteLength ? block : block.subarray(0, left);
  }
  yield [header({ name: "big", size: BIG_FILE }), body()] as const;
}

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
  for (const [name, entries, bytes, files] of [["10k small files", smallTree, SMALL_FILES * 1000, SMALL_FILES], ["one 500 MB file", bigFile, BIG_FILE, 1]] as const) {
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
