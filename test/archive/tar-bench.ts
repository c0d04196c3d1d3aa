/**
 * Throughput of the tar codec, parser and writer only (in-memory input, no disk).
 * Run from the repo root: `node_modules/.bin/bun test/archive/tar-bench.ts`
 * (or `node_modules/.bin/deno run -A test/archive/tar-bench.ts`).
 */
import process from "node:process";
import { readTar } from "../../src/archive/tar-reader.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import { TarWriter } from "../../src/archive/tar-writer.ts";
import { encodeHeader } from "../../src/archive/_tar-encode.ts";

const GB = 1024 ** 3;
const CHUNK = 64 * 1024; // what an HTTP body typically arrives in

const header = (name: string, size: number): TarHeader => ({
  name,
  type: "file",
  mode: 0o644,
  uid: 0,
  gid: 0,
  size,
  mtime: { sec: 1_600_000_000, nsec: 0 },
  linkname: "",
  devmajor: 0,
  devminor: 0,
  xattrs: new Map(),
});

/** A tar of `count` files of pseudo-random sizes up to `maxSize`, without its end marker. */
async function smallFiles(count: number, maxSize: number): Promise<Uint8Array> {
  const writer = new TarWriter();
  const out = new Response(writer.stream).arrayBuffer();
  const pool = new Uint8Array(maxSize + 1).fill(0x61);
  let seed = 1;
  for (let i = 0; i < count; i++) {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    const size = seed % (maxSize + 1);
    await writer.add(header(`usr/share/doc/package-${i % 97}/file-${i}.txt`, size), pool.subarray(0, size));
  }
  await writer.finish();
  const bytes = new Uint8Array(await out);
  return bytes.subarray(0, bytes.byteLength - 1024);
}

/** A stream of `head`, then `repeat` copies of `unit`, then `tail`, in CHUNK-sized views. */
function repeating(head: Uint8Array, unit: Uint8Array, repeat: number, tail: Uint8Array): ReadableStream<Uint8Array> {
  let i = -1;
  let at = 0;
  return new ReadableStream({
    pull(c) {
      // Every pull must enqueue: a pull that does not is not called again, and the read stalls.
      if (i === -1 && head.byteLength > 0) {
        c.enqueue(head);
        i = 0;
        return;
      }
      i = Math.max(i, 0);
      if (i === repeat) {
        c.enqueue(tail);
        c.close();
        return;
      }
      c.enqueue(unit.subarray(at, at + CHUNK));
      at += CHUNK;
      if (at >= unit.byteLength) {
        i++;
        at = 0;
      }
    },
  }, { highWaterMark: 0 });
}

async function drain(stream: ReadableStream<Uint8Array>): Promise<{ entries: number; bytes: number }> {
  let entries = 0;
  let bytes = 0;
  for await (const { body } of readTar(stream)) {
    entries++;
    for await (const c of body) bytes += c.byteLength;
  }
  return { entries, bytes };
}

function report(what: string, ms: number, bytes: number, entries: number): void {
  const mbs = (bytes / 1e6 / (ms / 1000)).toFixed(0);
  const eps = Math.round(entries / (ms / 1000)).toLocaleString("en");
  const rss = (process.memoryUsage().rss / 1e6).toFixed(0);
  console.log(`${what.padEnd(44)} ${(ms / 1000).toFixed(2)} s  ${mbs.padStart(6)} MB/s  ${eps.padStart(9)} entries/s  rss ${rss} MB`);
}

async function time<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

const END = new Uint8Array(1024);

{
  const content = new Uint8Array(1024 * 1024).fill(7);
  const [r, ms] = await time(() => drain(repeating(encodeHeader(header("big", GB)), content, 1024, END)));
  report("read: one 1 GiB file, 64 KiB chunks", ms, r.bytes + 512, r.entries);
}
{
  const unit = await smallFiles(1000, 20 * 1024);
  const [r, ms] = await time(() => drain(repeating(new Uint8Array(0), unit, 100, END)));
  report(`read: 100k files of 0-20 KiB (${(unit.byteLength * 100 / 1e9).toFixed(2)} GB)`, ms, unit.byteLength * 100, r.entries);
}
{
  const unit = await smallFiles(1000, 200);
  const [r, ms] = await time(() => drain(repeating(new Uint8Array(0), unit, 100, END)));
  report("read: 100k files of 0-200 bytes", ms, unit.byteLength * 100, r.entries);
}

/** Read a writer's stream to the end, counting bytes. */
async function consume(stream: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  const reader = stream.getReader();
  for (let r = await reader.read(); !r.done; r = await reader.read()) n += r.value.byteLength;
  return n;
}
{
  const chunk = new Uint8Array(CHUNK).fill(7);
  const [bytes, ms] = await time(async () => {
    const writer = new TarWriter();
    const counted = consume(writer.stream);
    await writer.add(header("big", GB), (async function* () {
      for (let n = 0; n < GB; n += chunk.byteLength) yield chunk;
    })());
    await writer.finish();
    return counted;
  });
  report("write: one 1 GiB file, 64 KiB chunks", ms, bytes, 1);
}
{
  const pool = new Uint8Array(20 * 1024 + 1).fill(0x61);
  const [bytes, ms] = await time(async () => {
    const writer = new TarWriter();
    const counted = consume(writer.stream);
    let seed = 1;
    for (let i = 0; i < 100_000; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      const size = seed % pool.byteLength;
      await writer.add(header(`usr/share/doc/package-${i % 97}/file-${i}.txt`, size), pool.subarray(0, size));
    }
    await writer.finish();
    return counted;
  });
  report("write: 100k files of 0-20 KiB", ms, bytes, 100_000);
}
