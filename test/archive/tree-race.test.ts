/**
 * Walks of a tree a running container keeps changing: a process swaps every directory of the tree
 * for a symlink to a sentinel directory outside it, over and over, while Diff, Changes, DiffSize
 * and the disk use walk it. Nothing of the sentinel may show up in what they return.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { changesDirs } from "../../src/archive/changes.ts";
import { exportChanges } from "../../src/archive/export.ts";
import { exportUpper } from "../../src/archive/overlay-export.ts";
import { diskUsage } from "../../src/archive/size.ts";
import { upperChanges } from "../../drivers/overlay/upper-changes.ts";
import { createSys } from "../../src/sys/bun.ts";

const sys = createSys();
const DIRS = 100;
const SECRET = "SENTINEL-SECRET-CONTENT";
const SENTINEL_FILES = 1000;

/** Swaps each dN of the tree for a symlink to the sentinel (dN moved to xN and back) for `ms`. */
const RACER = `
const fs = require("node:fs");
const [dir, target, ms] = process.argv.slice(-3);
const end = Date.now() + Number(ms);
while (Date.now() < end) {
  for (let i = 0; i < ${DIRS}; i++) {
    const d = dir + "/d" + i, x = dir + "/x" + i;
    try { fs.renameSync(d, x); fs.symlinkSync(target, d); } catch {}
    try { fs.unlinkSync(d); fs.renameSync(x, d); } catch {}
  }
}
`;

let root: string;
let racer: ChildProcess | null = null;
let tree: string;
let sentinel: string;

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-race-"));
  tree = path.join(root, "tree");
  sentinel = path.join(root, "sentinel");
  fs.mkdirSync(path.join(sentinel, "inner"), { recursive: true });
  fs.writeFileSync(path.join(sentinel, "inner", "f"), SECRET);
  fs.writeFileSync(path.join(sentinel, "secret-name"), SECRET);
  // Enough inodes that one walk through the sentinel shows in any count.
  fs.mkdirSync(path.join(sentinel, "many"));
  for (let i = 0; i < SENTINEL_FILES; i++) fs.writeFileSync(path.join(sentinel, "many", String(i)), "");
  for (let i = 0; i < DIRS; i++) {
    fs.mkdirSync(path.join(tree, `d${i}`, "inner"), { recursive: true });
    fs.writeFileSync(path.join(tree, `d${i}`, "inner", "f"), "plain");
  }
});
afterEach(async () => {
  if (racer !== null && racer.exitCode === null) {
    racer.kill("SIGKILL");
    await new Promise((resolve) => racer!.on("exit", resolve));
  }
  racer = null;
  fs.rmSync(root, { recursive: true, force: true });
});

/** Run `walk` repeatedly for the racer's lifetime; every result goes through `check`. */
async function underRace(walk: () => Promise<string>, ms = 1500): Promise<number> {
  racer = spawn(process.execPath, ["-e", RACER, tree, sentinel, String(ms)], { stdio: "inherit" });
  await new Promise((resolve) => racer!.on("spawn", resolve));
  const exited = new Promise((resolve) => racer!.on("exit", resolve));
  let rounds = 0;
  let done = false;
  void exited.then(() => (done = true));
  while (!done) {
    const out = await walk();
    expect(out).not.toContain(SECRET);
    expect(out).not.toContain("secret-name");
    rounds++;
    // A walk this small never yields to the event loop by itself: let the racer's exit arrive.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  await exited;
  return rounds;
}

const text = async (stream: ReadableStream<Uint8Array>) => new TextDecoder("latin1").decode(await new Response(stream).arrayBuffer());

describe("walks of a tree changed under them", () => {
  test("overlay's native Diff reads nothing through a swapped-in symlink", async () => {
    expect(await underRace(() => text(exportUpper(tree, { sys })))).toBeGreaterThan(0);
  }, 30_000);

  test("the naive Diff reads nothing through a swapped-in symlink", async () => {
    const all = await changesDirs(tree, null, sys);
    expect(await underRace(() => text(exportChanges(tree, all, sys)))).toBeGreaterThan(0);
  }, 30_000);

  test("Changes (naive and overlay's) list nothing of the sentinel", async () => {
    const empty = path.join(root, "empty");
    fs.mkdirSync(empty);
    expect(await underRace(async () => JSON.stringify(await changesDirs(tree, empty, sys)))).toBeGreaterThan(0);
    expect(await underRace(async () => JSON.stringify(await upperChanges(sys, tree, [empty])))).toBeGreaterThan(0);
  }, 30_000);

  test("the disk use counts nothing of the sentinel", async () => {
    const whole = await diskUsage(sys, tree);
    // 1 root + DIRS × (dN, inner, f)
    expect(whole.inodes).toBe(1 + DIRS * 3);
    expect(await underRace(async () => {
      const { inodes } = await diskUsage(sys, tree);
      // At most one symlink more per slot while it is swapped (dN a link, xN the tree); a walk
      // into the sentinel would add its SENTINEL_FILES inodes.
      return inodes <= 1 + DIRS * 4 ? "ok" : `${SECRET}: ${inodes} inodes`;
    })).toBeGreaterThan(0);
  }, 30_000);
});
