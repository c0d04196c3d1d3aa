/**
 * Layer IDs straight into the Driver interface, as a future caller other than the HTTP app (the
 * containerd snapshotter service) would pass them: every ID that is not one safe path component is
 * refused with InvalidRequestError by every method, and nothing under Home or beside it changes.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Driver } from "../src/core/driver.ts";
import { InvalidRequestError } from "../src/core/errors.ts";
import { silentLogger } from "../src/core/log.ts";
import { createSys } from "../src/sys/bun.ts";
import { TEST_DRIVERS, newDriver, makeTempRoot, removeTempRoot } from "./helpers/drivers.ts";
import { file, makeTar, streamOf } from "./helpers/layer-tar.ts";
import { snapshot } from "./helpers/tree.ts";
import { unmountBelow } from "./helpers/mounts.ts";

const sys = createSys();
const isRoot = process.getuid?.() === 0;

/** IDs that must never reach a path: traversal, separators, NUL, our own dot-names, absurd length. */
const HOSTILE_IDS = [
  "", ".", "..", "../outside", "a/../../outside", "/abs", "a/b", "a\0b", "\0", " ", "-rf",
  ".l", ".tmp", ".quota", "dir/../x", "x".repeat(256), "x".repeat(100_000), "é", "a\nb",
];

const drivers = TEST_DRIVERS.map((d) => [d.name, (home: string) => newDriver(d, home), d.skip ?? undefined] as const);

for (const [name, newDriver, skip] of drivers) {
  describe(`hostile IDs into the ${name} driver`, () => {
    let root: string;
    let home: string;
    let driver: Driver;
    beforeEach(async () => {
      if (skip) return;
      root = makeTempRoot(name, `strata-ids-${name}-`);
      home = path.join(root, "home");
      fs.mkdirSync(path.join(root, "outside"));
      fs.writeFileSync(path.join(root, "outside", "keep"), "precious");
      driver = await newDriver(home);
      await driver.create("base", "", {});
      await driver.applyDiff("base", "", streamOf(await makeTar([file("etc/os", "busybox\n")])));
      await driver.createReadWrite("rw", "base", {});
    });
    afterEach(async () => {
      if (skip) return;
      await driver.cleanup();
      unmountBelow(sys, root);
      removeTempRoot(root);
    });

    /** Every method, with `bad` as the layer ID or as the parent ("" is a legal parent: none, or the layer's own). */
    const calls = (bad: string): [string, () => Promise<unknown>][] => _all(bad).filter(([call]) => bad !== "" || !call.includes("parent"));
    const _all = (bad: string): [string, () => Promise<unknown>][] => [
      ["create", () => driver.create(bad, "", {})],
      ["create on a bad parent", () => driver.create("child", bad, {})],
      ["createReadWrite", () => driver.createReadWrite(bad, "base", {})],
      ["createReadWrite on a bad parent", () => driver.createReadWrite("child", bad, {})],
      ["remove", () => driver.remove(bad)],
      ["get", () => driver.get(bad, "")],
      ["put", () => driver.put(bad)],
      ["exists", () => driver.exists(bad)],
      ["getMetadata", () => driver.getMetadata(bad)],
      ["applyDiff", () => driver.applyDiff(bad, "", streamOf(new Uint8Array(1024)))],
      ["diff", () => driver.diff(bad, "")],
      ["diff against a bad parent", () => driver.diff("rw", bad)],
      ["changes", () => driver.changes(bad, "")],
      ["changes against a bad parent", () => driver.changes("rw", bad)],
      ["diffSize", () => driver.diffSize(bad, "")],
    ];

    test.skipIf(!!skip)(`refuses every one with InvalidRequestError and changes nothing${skip ? ` (skipped: ${skip})` : ""}`, async () => {
      const before = snapshot(root, sys, { dirMtimes: true });
      let refused = 0;
      for (const bad of HOSTILE_IDS) {
        for (const [call, fn] of calls(bad)) {
          let error: unknown;
          try {
            await fn();
          } catch (err) {
            error = err;
          }
          if (!(error instanceof InvalidRequestError)) {
            throw new Error(`${call}(${JSON.stringify(bad.slice(0, 40))}) was not refused: ${error === undefined ? "it succeeded" : String(error)}`);
          }
          expect(error.message).toStartWith("Invalid");
          expect(error.message.length).toBeLessThan(200);
          refused++;
        }
      }
      expect(refused).toBe(HOSTILE_IDS.length * _all("x").length - 4);
      expect(snapshot(root, sys, { dirMtimes: true })).toEqual(before);
      expect(fs.readFileSync(path.join(root, "outside", "keep"), "utf8")).toBe("precious");
      expect(await driver.exists("base")).toBe(true);
      expect(await driver.changes("rw", "base")).toEqual([]);
    }, 60_000);
  });
}
