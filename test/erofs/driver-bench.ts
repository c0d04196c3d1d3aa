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
import { TarWriter } from "../../src/archive/tar-writer.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import type { Driver, DriverConfig } from "../../src/core/driver.ts";
import { silentLogger } from "../../src/core/log.ts";
import { createSys } from "../../src/sys/bun.ts";

const sys = createSys();
const header = (h: Partial<TarHeader> & { name: string }): TarHeader => ({
  type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 1_600_000_000, nsec: 1 },
  linkname: "", devmajor: 0, devminor: 0, xattrs: new Map(), ...h,
});

async function tarBytes(items: Array<[TarHeader, Uint8Array?]>): Promise<Uint8Array> {
  const w = new TarWriter();
  const out = new Response(w.stream).arrayBuffer();
  for (const [h, b] of items) await w.add(h, b);
  await w.finish();
  return new Uint8Array(await out);
}

function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({ pull(c) { if (at >= bytes.byteLength) return c.close(); c.enqueue(bytes.slice(at, at + 25_000)); at += 25_000; } });
}

const small = (): Array<[TarHeader, Uint8Array?]> => {
  const body = new TextEncoder().encode("x".repeat(1000));
  return [...Array.from({ length: 100 }, (_, d) => [header({ name: `d${d}/`, type: "directory", mode: 0o755 })] as [TarHeader]),
    ...Array.from({ length: 10_000 }, (_, i) => [header({ name: `d${i % 100}/f${i}`, size: 1000 }), body] as [TarHeader, Uint8Array])];
};
const mixed = (): Array<[TarHeader, Uint8Array?]> => {
  const sizes = [120, 800, 2_500, 3_900, 6_000, 14_000, 33_000, 90_000, 400_000, 2_500_000];
  const data = new Uint8Array(2_500_000).map((_, i) => (i * 31) & 0xff);
  const out: Array<[TarHeader, Uint8Array?]> = [];
  for (let d = 0; d < 200; d++) out.push([header({ name: `usr/lib/d${d}/`, type: "directory", mode: 0o755 })]);
  for (let i = 0; i < 8_000; i++) {
    const size = sizes[(i * 7) % (i % 50 === 0 ? 10 : 8)];
    out.push([header({ name: `usr/lib/d${i % 200}/f${i}`, size }), data.subarray(0, size)]);
  }
  return out;
};

const du = (p: string) => Number(spawnSync("du", ["-sB1", p], { encoding: "utf8" }).stdout.split("\t")[0]);
const inodes = (p: string) => Number(spawnSync("sh", ["-c", `find '${p}' | wc -l`], { encoding: "utf8" }).stdout.trim());
const ms = async (fn: () => Promise<unknown>) => {
  const t0 = performance.now();
  await fn();
  return Math.round(performance.now() - t0);
};

const base = process.argv[2] ?? os.tmpdir();
const root = fs.mkdtempSync(path.join(base, "strata-erofs-dbench-"));
console.log("tree       driver   apply ms  diffsize ms  diff ms  remove ms  layer MB  inodes   (tar MB)");
try {
  for (const [name, items] of [["10k small", small()], ["mixed 8k", mixed()]] as const) {
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
