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
import { TarWriter } from "../../src/archive/tar-writer.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import { writeImageFromTar } from "../../src/erofs/from-tar.ts";
import type { Sys } from "../../src/sys/types.ts";

const CHUNK = 25_000; // what the daemon's chunked upload delivers

// A bench script, not library code: it may pick its runtime's adapter itself.
const sys: Sys = "Bun" in globalThis
  ? (await import("../../src/sys/bun.ts")).createSys()
  : (await import("../../src/sys/deno.ts")).createSys();

const header = (h: Partial<TarHeader> & { name: string }): TarHeader => ({
  type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 1_600_000_000, nsec: 1 },
  linkname: "", devmajor: 0, devminor: 0, xattrs: new Map(), ...h,
});

type Entries = () => AsyncIterable<readonly [TarHeader, AsyncIterable<Uint8Array> | Uint8Array | undefined]>;

/** A tar stream made on the fly, re-chunked to the daemon's chunk size, counting its bytes. */
function tarOf(entries: Entries, count: { bytes: number }): ReadableStream<Uint8Array> {
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
      const out = pending.slice(0, CHUNK);
      count.bytes += out.byteLength;
      c.enqueue(out);
      pending = pending.subarray(CHUNK);
    },
  });
}

async function* smallTree() {
  for (let d = 0; d < 100; d++) yield [header({ name: `d${d}/`, type: "directory", mode: 0o755 }), undefined] as const;
  const body = new TextEncoder().encode("x".repeat(1000));
  for (let i = 0; i < 10_000; i++) yield [header({ name: `d${i % 100}/f${i}`, size: body.byteLength }), body] as const;
}

/** Sizes like a distribution's /usr: mostly small, some tens of KB, a few MB. */
async function* mixedTree() {
  const sizes = [120, 800, 2_500, 3_900, 6_000, 14_000, 33_000, 90_000, 400_000, 2_500_000];
  const data = new Uint8Array(2_500_000).map((_, i) => (i * 31) & 0xff);
  for (let d = 0; d < 200; d++) yield [header({ name: `usr/lib/d${d}/`, type: "directory", mode: 0o755 }), undefined] as const;
  for (let i = 0; i < 8_000; i++) {
    const size = sizes[(i * 7) % (i % 50 === 0 ? 10 : 8)];
    yield [header({ name: `usr/lib/d${i % 200}/f${i}`, size, mtime: { sec: 1_600_000_000 + (i % 3), nsec: 0 } }), data.subarray(0, size)] as const;
    if (i % 10 === 0) yield [header({ name: `usr/lib/d${i % 200}/l${i}`, type: "symlink", linkname: `f${i}` }), undefined] as const;
  }
}

async function* bigFile() {
  const block = new Uint8Array(1 << 20).fill(7);
  async function* body() {
    for (let left = 500_000_000; left > 0; left -= block.byteLength) yield left >= block.byteLength ? block : block.subarray(0, left);
  }
  yield [header({ name: "big", size: 500_000_000 }), body()] as const;
}

/** Disk space used under `p`, in bytes, as du counts it. */
function du(p: string): number {
  return Number(spawnSync("du", ["-sB1", p], { encoding: "utf8" }).stdout.split("\t")[0]);
}

const base = process.argv[2] ?? os.tmpdir();
const root = fs.mkdtempSync(path.join(base, "strata-erofs-bench-"));
console.log(`runtime ${sys.runtime}, filesystem under ${root}`);
console.log(`${"tree".padEnd(16)} ${"tar MB".padStart(8)} ${"apply s".padStart(8)} ${"MB/s".padStart(6)} ${"dir MB".padStart(7)} ${"inodes".padStart(7)} | ${"erofs s".padStart(8)} ${"MB/s".padStart(6)} ${"image MB".padStart(9)} ${"vs tar".padStart(7)}`);
try {
  for (const [name, entries] of [["10k small files", smallTree], ["mixed 8k files", mixedTree], ["one 500 MB file", bigFile]] as const) {
    const dir = path.join(root, "dir");
    fs.mkdirSync(dir);
    const tarA = { bytes: 0 };
    let t0 = performance.now();
    await applyLayer(dir, tarOf(entries, tarA), { sys, whiteouts: "overlay" });
    spawnSync("sync");
    const applyS = (performance.now() - t0) / 1000;
    const dirBytes = du(dir);
    const inodes = Number(spawnSync("sh", ["-c", `find ${dir} | wc -l`], { encoding: "utf8" }).stdout.trim());
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
