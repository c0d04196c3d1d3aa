/**
 * A bounded fuzz over every JSON endpoint (fixed seed): random JSON values and random bytes as
 * bodies. The app must always answer JSON, refuse what is malformed with a 4xx {"Err"}, never
 * touch the committed base layer, and keep serving.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initVfs } from "../drivers/vfs/driver.ts";
import { createApp, fixedSource } from "../src/graphdriver/app.ts";
import type { Driver } from "../src/core/driver.ts";
import { silentLogger } from "../src/core/log.ts";
import { createSys } from "../src/sys/bun.ts";
import { file, makeTar } from "./helpers/layer-tar.ts";
import { snapshot } from "./helpers/tree.ts";

const ROUTES = ["Init", "Create", "CreateReadWrite", "Remove", "Get", "Put", "Exists", "GetMetadata", "Changes", "DiffSize", "Diff"];
const KEYS = ["ID", "Parent", "MountLabel", "StorageOpt", "Home", "Opts", "UIDMaps", "GIDMaps", "x"];
const ITERATIONS = 3000;

/** xorshift32: the same sequence on every run. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

describe("fuzzed requests", () => {
  const sys = createSys();
  let root: string;
  let driver: Driver;
  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-fuzz-"));
    driver = await initVfs({ home: path.join(root, "home"), options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger });
    await driver.create("base", "", {});
    await driver.applyDiff("base", "", new Response((await makeTar([file("etc/keep", "base")])) as BodyInit).body!);
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  test(`${ITERATIONS} random bodies: always JSON, malformed ones refused with 4xx, base layer intact`, async () => {
    const app = createApp(fixedSource(driver));
    const rand = rng(0x5eed);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
    const value = (depth: number): unknown => {
      const r = rand();
      if (r < 0.15) return null;
      if (r < 0.3) return Math.floor(rand() * 2 ** 40) - 2 ** 39;
      if (r < 0.45) return rand() < 0.5;
      if (r < 0.7) return pick(["", "missing", "../x", "a/b", "\u0000", "x".repeat(300), "ok-id", "/abs", "-init"]) + (rand() < 0.3 ? String(Math.floor(rand() * 9)) : "");
      if (depth > 2) return [];
      if (r < 0.85) return Array.from({ length: Math.floor(rand() * 3) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(rand() * 4) }, () => [pick(KEYS), value(depth + 1)]));
    };
    const before = snapshot(path.join(root, "home", "dir", "base"), sys, { dirMtimes: true });
    const statuses = new Map<number, number>();
    for (let i = 0; i < ITERATIONS; i++) {
      const route = pick(ROUTES);
      const body = rand() < 0.2
        ? Uint8Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256))
        : JSON.stringify(value(0)) + (rand() < 0.5 ? "\n" : "");
      const res = await app.fetch(new Request(`http://plugin/GraphDriver.${route}`, { method: "POST", body: body as BodyInit }));
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (route === "Diff" && res.status === 200) {
        await res.arrayBuffer();
        continue;
      }
      const json = (await res.json()) as { Err?: unknown };
      if (res.status !== 200) {
        expect(typeof json.Err).toBe("string");
        expect(String(json.Err).length).toBeGreaterThan(0);
        expect(res.status).toBeLessThan(500);
      }
      // Whatever was created or removed, the base layer must stay as it was committed.
      if (route === "Remove" && (await driver.exists("base")) === false) throw new Error(`iteration ${i}: base was removed by ${body}`);
    }
    expect(snapshot(path.join(root, "home", "dir", "base"), sys, { dirMtimes: true })).toEqual(before);
    expect(statuses.get(400)).toBeGreaterThan(ITERATIONS / 2);
    const exists = await app.fetch(new Request("http://plugin/GraphDriver.Exists", { method: "POST", body: '{"ID":"base"}\n' }));
    expect(await exists.json()).toEqual({ Exists: true });
  }, 60_000);
});
