import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { readTar } from "../../src/archive/tar-reader.ts";
import { entry, makeTar, streamOf } from "../helpers/layer-tar.ts";
import {
  catalogue, hasGnuTar, hasPython, listingOf, materialize, ourList, pattern, pythonList, pythonWrite, readItems, run,
  SPAWN_TIMEOUT, tempDirsPerTest, TOP_LEVEL,
} from "./tar-fixtures.ts";
import { paxBlocks, paxRecord, rawHeader } from "./tar-raw.ts";

const temp = tempDirsPerTest();

describe("readTar", () => {
  for (const format of ["pax", "gnu"] as const) {
    test.skipIf(!hasPython)(`reads python tarfile's ${format} archive exactly as python does`, async () => {
      const file = path.join(temp(), "a.tar");
      pythonWrite(catalogue(), format, file);
      const ours = await ourList(new Uint8Array(fs.readFileSync(file)));
      expect(ours).toEqual(pythonList(file));
      expect(ours.length).toBe(catalogue().length);
    }, SPAWN_TIMEOUT);
  }

  test.skipIf(!hasPython)("returns binary xattrs, long names, big ids and nanoseconds from a PAX archive", async () => {
    const file = path.join(temp(), "a.tar");
    const items = catalogue();
    pythonWrite(items, "pax", file);
    const ours = await ourList(new Uint8Array(fs.readFileSync(file)));
    expect(ours).toEqual(items.map((i) => listingOf(i.header, i.content)));
  }, SPAWN_TIMEOUT);

  for (const format of ["gnu", "posix"] as const) {
    test.skipIf(!hasGnuTar || !hasPython)(`reads GNU tar's --format=${format} archive exactly as python does`, async () => {
      const root = temp();
      materialize(catalogue(), root);
      const file = path.join(temp(), "a.tar");
      run("tar", [`--format=${format}`, "--xattrs", "--xattrs-include=*", "--sort=name", "--numeric-owner", "-cf", file, "-C", root, ...TOP_LEVEL]);
      const ours = await ourList(new Uint8Array(fs.readFileSync(file)));
      expect(ours).toEqual(pythonList(file));
      const caps = ours.find((l) => l.name === "d/caps")!;
      if (format === "posix") {
        expect(caps.xattrs["user.bin"]).toBe(Buffer.from(Uint8Array.from({ length: 256 }, (_, i) => i)).toString("hex"));
        expect(caps.mtime).toEqual([1_600_000_000, 123_456_789]);
      }
      expect(ours.some((l) => l.name.length > 255)).toBe(true);
      expect(ours.find((l) => l.name === "d/link")!.linkname).toBe(`../${"t".repeat(200)}`);
    }, SPAWN_TIMEOUT);
  }

  test("gives the same entries whatever the chunking of the input", async () => {
    // Without the 1.5 MB file: one-byte chunks of it would only make the test slow.
    const bytes = await makeTar(catalogue().filter((i) => i.header.name !== "d/big").map((i) => [i.header, i.content] as [typeof i.header, Uint8Array]));
    const whole = await ourList(bytes, bytes.byteLength);
    for (const chunk of [1, 7, 511, 512, 513, 4096, 65_536]) expect(await ourList(bytes, chunk)).toEqual(whole);
  });

  test("hands out the body as views of the input chunks, not copies", async () => {
    const bytes = await makeTar([[entry({ name: "big", size: 300_000 }), pattern(300_000)]]);
    const seen = new Set<ArrayBufferLike>();
    for await (const { body } of readTar(streamOf(bytes, 64 * 1024))) for await (const c of body) seen.add(c.buffer);
    expect(seen).toEqual(new Set([bytes.buffer]));
  });

  test("skips bodies the consumer does not read, or skips explicitly", async () => {
    const items = catalogue();
    const bytes = await makeTar(items.map((i) => [i.header, i.content] as [typeof i.header, Uint8Array]));
    const names: string[] = [];
    let n = 0;
    for await (const e of readTar(streamOf(bytes, 1000))) {
      names.push(e.header.name);
      if (n++ % 2 === 0) await e.skip();
      else {
        for await (const _ of e.body) break; // one chunk, then abandon the rest
      }
    }
    expect(names.length).toBe(items.length);
    expect(names.at(-1)).toBe("modes/empty");
  });

  test("does not read ahead of the consumer", async () => {
    const head = rawHeader((b) => b.set(new TextEncoder().encode((64 * 1024 * 1024).toString(8).padStart(11, "0")), 124), new Uint8Array(0));
    let pulls = 0;
    const mib = new Uint8Array(1024 * 1024);
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(pulls++ === 0 ? head : mib);
      },
    }, { highWaterMark: 0 });
    const it = readTar(stream)[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value.header.size).toBe(64 * 1024 * 1024);
    expect(pulls).toBe(1);
    const body = first.value.body[Symbol.asyncIterator]();
    await body.next();
    await body.next();
    expect(pulls).toBe(3);
    await it.return(undefined);
  });

  test("accepts the end of the stream after one zero block or at a header boundary", async () => {
    const bytes = await makeTar([[entry({ name: "a", size: 3 }), new Uint8Array(3)]]);
    for (const cut of [0, 512]) {
      const items = await readItems(bytes.subarray(0, bytes.byteLength - cut));
      expect(items.map((i) => i.header.name)).toEqual(["a"]);
    }
  });

  test("ignores what follows the end-of-archive marker", async () => {
    const bytes = await makeTar([entry({ name: "a" })]);
    const padded = new Uint8Array(bytes.byteLength + 10_240);
    padded.set(bytes);
    padded.set(new TextEncoder().encode("trailing junk"), bytes.byteLength + 5000);
    expect((await readItems(padded)).map((i) => i.header.name)).toEqual(["a"]);
  });

  test("applies global PAX records to the entries after them, and local ones only to the next", async () => {
    const globals = [["uname", "global"], ["uid", "4242"], ["SCHILY.xattr.user.g", "v"], ["path", "not-per-file"]];
    const bytes = new Uint8Array([
      ...paxBlocks(globals.map(([k, v]) => paxRecord(k!, v!)).join(""), "g"),
      ...paxBlocks(paxRecord("path", "renamed.txt")),
      ...rawHeader(() => {}, new Uint8Array(0)),
      ...rawHeader(() => {}),
    ]);
    const items = await readItems(bytes);
    expect(items.map((i) => [i.header.name, i.header.uname, i.header.uid, new TextDecoder().decode(i.header.xattrs.get("user.g"))])).toEqual([
      ["renamed.txt", "global", 4242, "v"],
      ["file.txt", "global", 4242, "v"],
    ]);
  });

  test("reads base-256 numbers", async () => {
    const bytes = rawHeader((b) => {
      b.set([0x80, 0, 0, 0, 0, 0, 0x10, 0], 108); // uid 4096
      b.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe], 136); // mtime -2
      b.set([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0], 124); // size 512
    }, new Uint8Array(512 + 1024));
    const [item] = await readItems(bytes);
    expect([item!.header.uid, item!.header.mtime.sec, item!.header.size]).toEqual([4096, -2, 512]);
  });

  test("treats contiguous files as files and a slash-terminated old-style file as a directory", async () => {
    const bytes = new Uint8Array([
      ...rawHeader((b) => (b[156] = 0x37), new Uint8Array(0)),
      ...rawHeader((b) => (b.fill(0, 0, 100), b.set(new TextEncoder().encode("dir/"), 0), (b[156] = 0)), new Uint8Array(0)),
      ...new Uint8Array(1024),
    ]);
    expect((await readItems(bytes)).map((i) => [i.header.name, i.header.type])).toEqual([["file.txt", "file"], ["dir/", "directory"]]);
  });

  test("accepts a checksum summed over signed bytes, as some old tars wrote it", async () => {
    const bytes = rawHeader((b) => b.set(new TextEncoder().encode("é.txt\0"), 0));
    let signed = 0;
    for (let i = 0; i < 512; i++) signed += i >= 148 && i < 156 ? 0x20 : (bytes[i]! << 24) >> 24;
    bytes.set(new TextEncoder().encode(`${signed.toString(8).padStart(6, "0")}\0 `), 148);
    expect((await readItems(bytes)).map((i) => i.header.name)).toEqual(["é.txt"]);
  });

  test("joins the ustar prefix, but not GNU's reuse of those bytes, and star's shorter one", async () => {
    const withPrefix = (magic: string, star: boolean) =>
      rawHeader((b) => {
        b.set(new TextEncoder().encode(magic), 257);
        b.set(new TextEncoder().encode("some/dir"), 345);
        if (star) b.set(new TextEncoder().encode("tar\0"), 508);
      });
    expect((await readItems(withPrefix("ustar\x0000", false)))[0]!.header.name).toBe("some/dir/file.txt");
    expect((await readItems(withPrefix("ustar\x0000", true)))[0]!.header.name).toBe("some/dir/file.txt");
    expect((await readItems(withPrefix("ustar  \0", false)))[0]!.header.name).toBe("file.txt");
  });

  test("cancels the input when the consumer stops early", async () => {
    const bytes = await makeTar([entry({ name: "a" }), entry({ name: "b" })]);
    let cancelled = false;
    const stream = new ReadableStream<Uint8Array>({
      pull: (c) => c.enqueue(bytes.slice(0, 512)),
      cancel: () => void (cancelled = true),
    });
    for await (const _ of readTar(stream)) break;
    expect(cancelled).toBe(true);
  });

  test("finishes a pending body read before moving on, and refuses reads after", async () => {
    const bytes = await makeTar([[entry({ name: "a", size: 1000 }), pattern(1000)], entry({ name: "b" })]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let at = 0;
    const stream = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (at === 512) await gate; // hold the first body chunk back
        c.enqueue(bytes.subarray(at, (at += 512)));
      },
    }, { highWaterMark: 0 });
    const entries = readTar(stream)[Symbol.asyncIterator]();
    const a = (await entries.next()).value;
    const body = a.body[Symbol.asyncIterator]();
    const pendingChunk = body.next();
    const nextEntry = entries.next();
    release();
    expect((await pendingChunk).value).toEqual(pattern(1000).subarray(0, 512));
    expect((await nextEntry).value.header.name).toBe("b");
    await expect(body.next()).rejects.toThrow(`Tar entry "a" was read after the reader moved on`);
  });

  test("reads a 2 GB file with flat memory", async () => {
    const size = 2 * 1024 ** 3;
    const head = rawHeader((b) => b.set(new TextEncoder().encode(size.toString(8).padStart(11, "0")), 124), new Uint8Array(0));
    let sent = -1;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent < 0) c.enqueue(head);
        else if (sent < size) c.enqueue(new Uint8Array(1024 * 1024)); // fresh: retaining any would show
        else c.enqueue(new Uint8Array(1024));
        // Collect now and then: garbage the collector has not reached yet is not memory the reader holds.
        if (sent > 0 && sent % (128 * 1024 * 1024) === 0) Bun.gc(true);
        if (sent < 0) sent = 0;
        else if (sent < size) sent += 1024 * 1024;
        else c.close();
      },
    });
    const before = process.memoryUsage().rss;
    let total = 0;
    for await (const { body } of readTar(stream)) for await (const c of body) total += c.byteLength;
    expect(total).toBe(size);
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 1024 * 1024);
  }, 60_000);
});
