import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { readTar } from "../../src/archive/tar-reader.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import { TarWriter } from "../../src/archive/tar-writer.ts";
import { InvalidLayerError, StrataError } from "../../src/core/errors.ts";
import { bytesOf, entry, makeTar } from "../helpers/layer-tar.ts";
import {
  catalogue, hasGnuTar, hasPython, isRoot, type Item, listingOf, ourList, pattern, pythonList, readItems, run, SPAWN_TIMEOUT,
  tempDirsPerTest,
} from "./tar-fixtures.ts";

const temp = tempDirsPerTest();

const pairs = (items: Item[]) => items.map((i) => [i.header, i.content] as [TarHeader, Uint8Array]);
const expected = (items: Item[]) =>
  items.map((i) => listingOf({ ...i.header, name: i.header.type === "directory" ? `${i.header.name}/` : i.header.name }, i.content));
const text = (s: string) => new TextEncoder().encode(s);
async function* chunks(...parts: Uint8Array[]): AsyncIterable<Uint8Array> {
  for (const p of parts) yield p;
}
/** The typeflags of the header blocks in an archive of bodiless or one-block entries. */
const typeflags = (bytes: Uint8Array) => {
  const out: string[] = [];
  for (let at = 0; at + 512 <= bytes.byteLength && bytes[at] !== 0; at += 512) {
    out.push(String.fromCharCode(bytes[at + 156]!));
    if (bytes[at + 156] === 0x78) at += 512 * Math.ceil(parseInt(new TextDecoder().decode(bytes.subarray(at + 124, at + 135)), 8) / 512);
  }
  return out;
};

describe("TarWriter", () => {
  test("round-trips every catalogue entry through the reader", async () => {
    const items = catalogue();
    const got = await readItems(await makeTar(pairs(items)));
    expect(got.map((i) => listingOf(i.header, i.content))).toEqual(expected(items));
    expect(got.find((i) => i.header.name === "d/")!.header.name).toBe("d/");
  });

  test.skipIf(!hasPython)("writes archives python tarfile reads exactly, binary xattrs included", async () => {
    const file = path.join(temp(), "a.tar");
    const items = catalogue();
    fs.writeFileSync(file, await makeTar(pairs(items)));
    const listed = pythonList(file);
    expect(listed).toEqual(await ourList(fs.readFileSync(file)));
    expect(listed.find((l) => l.name === "d/caps")!.xattrs["user.bin"]).toBe(Buffer.from(Uint8Array.from({ length: 256 }, (_, i) => i)).toString("hex"));
    expect(listed.find((l) => l.name === "d/old")!.mtime).toEqual([-31_536_000, 500_000_000]);
  }, SPAWN_TIMEOUT);

  test.skipIf(!hasGnuTar)("writes archives GNU tar lists", async () => {
    const file = path.join(temp(), "a.tar");
    fs.writeFileSync(file, await makeTar(pairs(catalogue())));
    const listing = run("tar", ["-tvf", file]).toString();
    expect(listing).toContain(`long/${"n".repeat(120)}/${"m".repeat(150)}`);
    expect(listing).toContain("d/héllo-世界.txt");
    expect(listing).toContain(`d/link -> ../${"t".repeat(200)}`);
    expect(listing).toContain("d/hard link to d/plain.txt");
    expect(listing).toMatch(/^crw-rw-rw- 0\/0 +1,3 .* dev\/null$/m);
    expect(listing).toMatch(/^-rwsr-xr-x .* modes\/suid$/m);
    expect(listing).toMatch(/^-rw-r--r-- 3000000\/3000001 .* d\/bigid$/m);
  }, SPAWN_TIMEOUT);

  test.skipIf(!hasGnuTar || !hasPython)("writes archives GNU tar extracts with xattrs, modes and nanosecond times", async () => {
    // Device nodes, ownership and security.* xattrs need root to extract; leave them out otherwise.
    const items = catalogue()
      .filter((i) => isRoot || (i.header.type !== "char" && i.header.type !== "block"))
      .map((i) => isRoot ? i : { ...i, header: { ...i.header, xattrs: new Map([...i.header.xattrs].filter(([k]) => k.startsWith("user."))) } });
    const file = path.join(temp(), "a.tar");
    fs.writeFileSync(file, await makeTar(pairs(items)));
    const root = temp();
    run("tar", ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", file, "-C", root]);
    for (const { header: h, content } of items) {
      const p = path.join(root, h.name);
      const st = fs.lstatSync(p, { bigint: true });
      if (h.type === "file") expect(createHash("sha256").update(fs.readFileSync(p)).digest("hex")).toBe(createHash("sha256").update(content).digest("hex"));
      if (h.type === "symlink") expect(fs.readlinkSync(p)).toBe(h.linkname);
      if (h.type === "link") expect(st.ino).toBe(fs.lstatSync(path.join(root, h.linkname), { bigint: true }).ino);
      if (h.type !== "symlink" && h.type !== "link") expect(Number(st.mode & 0o7777n)).toBe(h.mode);
      if (h.type !== "directory" && h.type !== "link") expect(st.mtimeNs).toBe(BigInt(h.mtime.sec) * 1_000_000_000n + BigInt(h.mtime.nsec));
      if (isRoot && h.type !== "link") expect([Number(st.uid), Number(st.gid)]).toEqual([h.uid, h.gid]);
      if (h.type === "char") expect(st.rdev).toBe(BigInt((h.devmajor << 8) | h.devminor));
      for (const [name, value] of h.xattrs) {
        const got = run("python3", ["-c", "import os,sys; sys.stdout.buffer.write(os.getxattr(sys.argv[1], sys.argv[2]))", p, name]);
        expect(new Uint8Array(got) as Uint8Array).toEqual(value);
      }
    }
  }, SPAWN_TIMEOUT);

  test("writes one 512-byte block for an entry ustar can hold, with a PAX record only when needed", async () => {
    expect(typeflags(await makeTar([entry({ name: "a.txt" })]))).toEqual(["0"]);
    expect((await makeTar([entry({ name: "a.txt" })])).byteLength).toBe(512 + 1024);
    const deep = `${"p".repeat(150)}/${"n".repeat(100)}`;
    expect(typeflags(await makeTar([entry({ name: deep })]))).toEqual(["0"]);
    expect((await readItems(await makeTar([entry({ name: deep })])))[0]!.header.name).toBe(deep);
    expect(typeflags(await makeTar([entry({ name: "a", mtime: { sec: 1, nsec: 0 } })]))).toEqual(["0"]);
    expect(typeflags(await makeTar([entry({ name: "a", mtime: { sec: 1, nsec: 1 } })]))).toEqual(["x", "0"]);
    expect(typeflags(await makeTar([entry({ name: "é" })]))).toEqual(["x", "0"]);
    expect(typeflags(await makeTar([entry({ name: "a", uid: 2_097_151 })]))).toEqual(["0"]);
    expect(typeflags(await makeTar([entry({ name: "a", uid: 2_097_152 })]))).toEqual(["x", "0"]);
    expect(typeflags(await makeTar([entry({ name: "a", uname: "u".repeat(33) })]))).toEqual(["x", "0"]);
  });

  test("ends directory names with a slash", async () => {
    const bytes = await makeTar([entry({ name: "dir", type: "directory" }), entry({ name: "other/", type: "directory" })]);
    expect((await readItems(bytes)).map((i) => i.header.name)).toEqual(["dir/", "other/"]);
  });

  test("writes the same bytes for the same entries, whatever the xattr order", async () => {
    const xattrs = [["user.b", text("2")], ["user.a", text("1")], ["trusted.c", new Uint8Array(0)]] as const;
    const one = await makeTar([entry({ name: "f", xattrs: new Map(xattrs) })]);
    const two = await makeTar([entry({ name: "f", xattrs: new Map([...xattrs].reverse()) })]);
    expect(one).toEqual(two);
    const [item] = await readItems(one);
    expect([...item!.header.xattrs.keys()]).toEqual(["trusted.c", "user.a", "user.b"]);
    expect(item!.header.xattrs.get("trusted.c")).toEqual(new Uint8Array(0));
  });

  test("carries a size too big for octal, streaming an 8 GiB body", async () => {
    const size = 8 * 1024 ** 3 + 1;
    const mib = new Uint8Array(1024 * 1024);
    async function* body() {
      for (let sent = 0; sent < size; sent += mib.byteLength) yield sent + mib.byteLength <= size ? mib : mib.subarray(0, size - sent);
    }
    const writer = new TarWriter();
    const adding = (async () => {
      await writer.add(entry({ name: "huge", size }), body());
      await writer.finish();
    })();
    let seen = 0;
    let header: TarHeader | undefined;
    for await (const e of readTar(writer.stream)) {
      header = e.header;
      for await (const c of e.body) seen += c.byteLength;
    }
    await adding;
    expect([header!.size, seen]).toEqual([size, size]);
  }, 60_000);

  test("passes large body chunks through without copying them", async () => {
    const big = pattern(100_000);
    const writer = new TarWriter();
    const out = (async () => {
      const got: Uint8Array[] = [];
      const reader = writer.stream.getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read()) got.push(r.value);
      return got;
    })();
    await writer.add(entry({ name: "f", size: big.byteLength }), big);
    await writer.finish();
    expect((await out).some((c) => c === big)).toBe(true);
  });

  test("waits for the consumer before taking more", async () => {
    const writer = new TarWriter({ highWaterMark: 64 * 1024 });
    const body = pattern(1024 * 1024);
    let done = false;
    const adding = writer.add(entry({ name: "f", size: body.byteLength }), chunks(...Array.from({ length: 16 }, (_, i) => body.subarray(i * 65536, (i + 1) * 65536))));
    adding.then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    const reading = bytesOf(writer.stream);
    await adding;
    await writer.finish();
    const [item] = await readItems(await reading);
    expect(item!.content).toEqual(body);
  });

  test("refuses a body whose length disagrees with the header before writing, and stays usable", async () => {
    const writer = new TarWriter();
    const reading = bytesOf(writer.stream);
    await expect(writer.add(entry({ name: "f", size: 5 }), text("four"))).rejects.toThrow(
      new InvalidLayerError(`Cannot write tar entry "f": header says 5 bytes, body has 4`),
    );
    await expect(writer.add(entry({ name: "g", size: 5 }))).rejects.toBeInstanceOf(InvalidLayerError);
    await writer.add(entry({ name: "h", size: 2 }), text("ok"));
    await writer.finish();
    expect((await readItems(await reading)).map((i) => i.header.name)).toEqual(["h"]);
  });

  for (const [what, parts, message] of [
    ["grows", [text("12345"), text("6")], `File "f" grew while being archived: more than 5 bytes`],
    ["shrinks", [text("123")], `File "f" shrank while being archived: 3 of 5 bytes`],
  ] as const) {
    test(`fails the whole stream when a file ${what} while being archived`, async () => {
      const writer = new TarWriter();
      // Caught at once: the stream fails while add is still being awaited.
      const reading = bytesOf(writer.stream).catch((e: unknown) => e);
      await expect(writer.add(entry({ name: "f", size: 5 }), chunks(...parts))).rejects.toThrow(message);
      expect(await reading).toEqual(new StrataError(message));
      await expect(writer.finish()).rejects.toThrow(message);
    });
  }

  test("refuses headers it cannot encode", async () => {
    const writer = new TarWriter();
    const reading = bytesOf(writer.stream);
    for (const bad of [
      entry({ name: "a\0b" }),
      entry({ name: "" }),
      entry({ name: "a", uid: -1 }),
      entry({ name: "a", mode: 1.5 }),
      entry({ name: "a", mtime: { sec: 0, nsec: 1e9 } }),
      entry({ name: "a", type: "directory", size: 1 }),
      entry({ name: "a", xattrs: new Map([["user.a=b", text("x")]]) }),
      entry({ name: "a", type: "socket" as TarHeader["type"] }),
    ]) {
      await expect(writer.add(bad)).rejects.toBeInstanceOf(InvalidLayerError);
    }
    await writer.finish();
    expect(await readItems(await reading)).toEqual([]);
  });

  test("tells add when the reader cancels the stream", async () => {
    const writer = new TarWriter({ highWaterMark: 1024 });
    await writer.stream.cancel(new Error("client went away"));
    const err = await writer.add(entry({ name: "f", size: 100_000 }), pattern(100_000)).catch((e) => e);
    expect(err).toBeInstanceOf(StrataError);
    expect(err.message).toBe("Tar stream was cancelled by its reader");
  });

  test("abort fails the stream with the given error", async () => {
    const writer = new TarWriter();
    const reading = bytesOf(writer.stream);
    await writer.add(entry({ name: "f" }));
    const err = new StrataError("Disk on fire");
    writer.abort(err);
    await expect(reading).rejects.toBe(err);
    await expect(writer.add(entry({ name: "g" }))).rejects.toBe(err);
  });

  test("refuses entries after finish", async () => {
    const writer = new TarWriter();
    const reading = bytesOf(writer.stream);
    await writer.finish();
    await expect(writer.add(entry({ name: "late" }))).rejects.toThrow("Tar writer is already finished");
    expect((await reading).byteLength).toBe(1024);
  });
});
