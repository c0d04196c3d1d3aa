/**
 * Hostile layer tars sent through the protocol app to every driver: each is refused with an
 * {"Err"} that says what was wrong, nothing outside the layer changes, the layer is left as it
 * was, and the driver keeps serving.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { TEST_DRIVERS, makeTempRoot, removeTempRoot } from "./helpers/drivers.ts";
import { createApp, fixedSource } from "../src/graphdriver/app.ts";
import type { Driver, DriverConfig } from "../src/core/driver.ts";
import { silentLogger } from "../src/core/log.ts";
import { createSys } from "../src/sys/bun.ts";
import { paxArchive, paxRecord, rawHeader } from "./archive/tar-raw.ts";
import { entry, file, makeTar } from "./helpers/layer-tar.ts";
import { snapshot } from "./helpers/tree.ts";

const sys = createSys();
const isRoot = process.getuid?.() === 0;

/** Each case: a name, the tar (built knowing where "outside" is), and what the error must say. */
type Case = [string, (outside: string) => Promise<Uint8Array> | Uint8Array, RegExp];

const CASES: Case[] = [
  ["a name climbing out with ..", () => makeTar([file("../escape", "x")]), /"\.\.\/escape": it points outside the layer/],
  ["a symlink out of the layer, then a file written through it", (o) => makeTar([entry({ name: "link", type: "symlink", linkname: o }), file("link/pwned", "x")]), /"link\/pwned": "link" is a symlink/],
  ["a hardlink to a file outside the layer", () => makeTar([entry({ name: "hl", type: "link", linkname: "../../outside/sentinel" })]), /"hl": it points outside the layer/],
  ["a whiteout through a symlink out of the layer", (o) => makeTar([entry({ name: "link", type: "symlink", linkname: o }), entry({ name: "link/.wh.sentinel" })]), /"link\/\.wh\.sentinel": "link" is a symlink/],
  ["an opaque marker under a symlink", (o) => makeTar([entry({ name: "link", type: "symlink", linkname: o }), entry({ name: "link/.wh..wh..opq" })]), /"link\/\.wh\.\.wh\.\.opq": "link" is a symlink/],
  ["a truncated archive", async () => (await makeTar([file("a", "x".repeat(4000)), file("b", "y")])).subarray(0, 1500), /Unexpected end of archive in the body of "a"/],
  ["a header with a bad checksum", () => {
    const tar = rawHeader(() => {});
    tar[0] ^= 0x20;
    return tar;
  }, /checksum mismatch/],
  ["a size field larger than the data", () => rawHeader((b) => b.set(new TextEncoder().encode("00004000000\0"), 124), new Uint8Array(600)), /Unexpected end of archive in the body of "file.txt"/],
  ["a 2 MiB PAX record", () => paxArchive(paxRecord("path", "a".repeat(2 << 20))), /PAX record of \d+ bytes exceeds the limit/],
  ["a name with a NUL byte", () => paxArchive(paxRecord("path", "a\u0000b")), /NUL in name/],
  ["a path deeper than PATH_MAX", () => paxArchive(paxRecord("path", "d/".repeat(3000) + "f")), /name longer than 4096 bytes/],
];

const DRIVERS = TEST_DRIVERS.map((d) => [d.name, d.init, d.skip ?? undefined] as const);

for (const [name, init, skip] of DRIVERS) {
  describe(`hostile layers (${name})`, () => {
    let root: string;
    let outside: string;
    let driver: Driver;
    let call: (method: string, body: string | Uint8Array, query?: string) => Promise<{ status: number; json: Record<string, unknown> }>;

    beforeEach(async () => {
      if (skip) return;
      root = makeTempRoot(name, `strata-hostile-${name}-`);
      outside = path.join(root, "outside");
      fs.mkdirSync(outside);
      fs.writeFileSync(path.join(outside, "sentinel"), "keep me");
      driver = await init({ home: path.join(root, "home"), options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger });
      const app = createApp(fixedSource(driver));
      call = async (method, body, query = "") => {
        const res = await app.fetch(new Request(`http://plugin/GraphDriver.${method}${query}`, { method: "POST", body: body as BodyInit }));
        return { status: res.status, json: (await res.json()) as Record<string, unknown> };
      };
      expect((await call("Create", '{"ID":"base"}\n')).status).toBe(200);
      expect((await call("ApplyDiff", await makeTar([file("etc/keep", "base")]), "?id=base&parent=")).status).toBe(200);
    });
    afterEach(async () => {
      if (skip) return;
      await driver.cleanup();
      removeTempRoot(root);
    });

    const contents = async (id: string) => {
      const dir = await driver.get(id, "");
      try {
        return snapshot(dir, sys, { dirMtimes: true });
      } finally {
        await driver.put(id);
      }
    };

    for (const [i, [what, build, says]] of CASES.entries()) {
      test.skipIf(!!skip)(`refuses ${what}${skip ? ` (skipped: ${skip})` : ""}`, async () => {
        const id = `hostile-${i}`;
        expect((await call("Create", `{"ID":"${id}","Parent":"base"}\n`)).status).toBe(200);
        const before = await contents(id);
        const outsideBefore = snapshot(outside, sys, { dirMtimes: true });

        const res = await call("ApplyDiff", await build(outside), `?id=${id}&parent=base`);
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(String(res.json.Err)).toMatch(says);

        expect(snapshot(outside, sys, { dirMtimes: true })).toEqual(outsideBefore);
        expect(fs.readdirSync(root).sort()).toEqual(["home", "outside"]);
        expect(await contents(id)).toEqual(before);
        // Still serving: a legal layer applies on top of the same parent.
        expect((await call("Create", `{"ID":"ok-${i}","Parent":"base"}\n`)).status).toBe(200);
        expect((await call("ApplyDiff", await makeTar([file("fine", "ok")]), `?id=ok-${i}&parent=base`)).json).toEqual({ Size: 2, Err: "" });
      });
    }
  });
}
