/**
 * The tar codec under Deno: writer → reader round trips of the awkward cases, no test framework.
 * Run from the repo root: `node_modules/.bin/deno run -A test/archive/tar-deno-smoke.ts`.
 */
import { readTar } from "../../src/archive/tar-reader.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import { TarWriter } from "../../src/archive/tar-writer.ts";
import { InvalidLayerError } from "../../src/core/errors.ts";
import { entry } from "../helpers/layer-tar.ts";
import { smoke } from "../helpers/smoke-tally.ts";


async function roundTrip(items: Array<[TarHeader, Uint8Array?]>, chunk = 1000): Promise<Array<[TarHeader, Uint8Array]>> {
  const writer = new TarWriter();
  const bytes = new Response(writer.stream).arrayBuffer();
  for (const [h, body] of items) await writer.add(h, body);
  await writer.finish();
  const all = new Uint8Array(await bytes);
  let at = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (at >= all.byteLength) return c.close();
      c.enqueue(all.subarray(at, (at += chunk)));
    },
  });
  const out: Array<[TarHeader, Uint8Array]> = [];
  for await (const { header, body } of readTar(stream)) {
    const parts: number[] = [];
    for await (const c of body) parts.push(...c);
    out.push([header, Uint8Array.from(parts)]);
  }
  return out;
}

const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
const longName = `${"d".repeat(150)}/${"é".repeat(100)}`;
const cases: Array<[string, () => Promise<void>]> = [
  ["file content and mode", async () => {
    const body = Uint8Array.from({ length: 70_000 }, (_, i) => i % 251);
    const [[h, got]] = await roundTrip([[entry({ name: "bin/sh", mode: 0o4755, size: body.byteLength }), body]]) as [[TarHeader, Uint8Array]];
    assert(h.name === "bin/sh" && h.mode === 0o4755 && same(got, body), "content or mode differ");
  }],
  ["binary xattr values", async () => {
    const xattrs = new Map([["user.bin", allBytes], ["security.capability", new Uint8Array([1, 0, 0, 2])]]);
    const [[h]] = await roundTrip([[entry({ name: "caps", xattrs })]]) as [[TarHeader, Uint8Array]];
    assert(same(h.xattrs.get("user.bin")!, allBytes) && h.xattrs.size === 2, "xattr bytes differ");
  }],
  ["long non-ASCII names and link targets", async () => {
    const [[f], [l]] = await roundTrip([[entry({ name: longName })], [entry({ name: "l", type: "symlink", linkname: longName })]]);
    assert(f!.name === longName && l!.linkname === longName, "long name differs");
  }],
  ["nanoseconds, big ids, devices", async () => {
    const [[h], [d]] = await roundTrip([
      [entry({ name: "t", mtime: { sec: 1_600_000_000, nsec: 123_456_789 }, uid: 3_000_000, gid: 70_000 })],
      [entry({ name: "null", type: "char", devmajor: 1, devminor: 3 })],
    ]);
    assert(h!.mtime.nsec === 123_456_789 && h!.uid === 3_000_000 && h!.gid === 70_000, "time or ids differ");
    assert(d!.type === "char" && d!.devmajor === 1 && d!.devminor === 3, "device differs");
  }],
  ["directories get a trailing slash", async () => {
    const [[h]] = await roundTrip([[entry({ name: "etc", type: "directory", mode: 0o755 })]]) as [[TarHeader, Uint8Array]];
    assert(h.name === "etc/" && h.type === "directory", `got ${h.name}`);
  }],
  ["corruption is an InvalidLayerError", async () => {
    const junk = new Uint8Array(1024).fill(0x41);
    try {
      for await (const _ of readTar(new Response(junk).body!)) continue;
    } catch (err) {
      assert(err instanceof InvalidLayerError, `threw ${err}`);
      return;
    }
    throw new Error("junk was accepted");
  }],
];

function assert(ok: boolean, message: string): void {
  if (!ok) throw new Error(message);
}
function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}

const tally = smoke();
for (const [name, run] of cases) {
  await tally.checkAsync(name, async () => {
    await run();
    return true;
  });
}
tally.finish();
