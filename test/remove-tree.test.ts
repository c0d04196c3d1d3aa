import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { removeBeneath } from "../src/store/remove-tree.ts";
import { createSys } from "../src/sys/bun.ts";
import { rootUnavailable } from "./helpers/drivers.ts";

const openFds = () => fs.readdirSync("/proc/self/fd").length;

/** Every path below `dir` with what it is (type, mode, content or target): a snapshot to compare. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = path.join(rel, name);
      const st = fs.lstatSync(path.join(dir, r));
      if (st.isSymbolicLink()) out.push(`${r} -> ${fs.readlinkSync(path.join(dir, r))}`);
      else if (st.isDirectory()) {
        out.push(`${r}/ ${st.mode}`);
        walk(r);
      } else out.push(`${r} ${st.mode} ${fs.readFileSync(path.join(dir, r), "utf8")}`);
    }
  };
  walk("");
  return out;
}

/**
 * A process that, as fast as it can for 2 s, turns each directory dN of a tree into a symlink to
 * the sentinel (the directory itself moved to xN): a walk that resolves a path twice follows one.
 */
const RACER = `
const fs = require("node:fs");
const [dir, target] = process.argv.slice(-2);
const end = Date.now() + 2000;
while (Date.now() < end) {
  let moved = 0;
  for (let i = 0; i < 200; i++) {
    try { fs.renameSync(dir + "/d" + i, dir + "/x" + i); fs.symlinkSync(target, dir + "/d" + i); moved++; } catch {}
  }
  if (moved === 0 && !fs.existsSync(dir)) break;
}
`;

for (const openat2 of [true, false]) {
  const sys = createSys({ openat2 });
  describe(`removeBeneath (${openat2 ? "openat2" : "component walk"})`, () => {
    let root: string;
    let home: string;
    let sentinel: string;
    let before: string[];

    beforeEach(() => {
      root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-rmtree-"));
      home = path.join(root, "home");
      sentinel = path.join(root, "sentinel");
      fs.mkdirSync(path.join(home, "tmp"), { recursive: true });
      fs.mkdirSync(path.join(sentinel, "sub"), { recursive: true });
      fs.writeFileSync(path.join(sentinel, "precious"), "keep me");
      fs.writeFileSync(path.join(sentinel, "sub", "also"), "and me");
      before = snapshot(sentinel);
    });
    afterEach(() => {
      spawnSync("umount", ["-R", path.join(home, "tmp", "t", "m")]);
      fs.rmSync(root, { recursive: true, force: true });
    });

    test("removes a tree of files, directories, symlinks and FIFOs, the links as links", async () => {
      const t = path.join(home, "tmp", "t");
      fs.mkdirSync(path.join(t, "a", "b", "c"), { recursive: true });
      fs.writeFileSync(path.join(t, "a", "f"), "x");
      fs.writeFileSync(path.join(t, "a", "b", "c", "g"), "y");
      fs.symlinkSync(sentinel, path.join(t, "a", "to-sentinel"));
      fs.symlinkSync(path.join(sentinel, "precious"), path.join(t, "a", "b", "to-file"));
      spawnSync("mkfifo", [path.join(t, "fifo")]);
      fs.chmodSync(path.join(t, "a", "b"), 0o000);
      const fds = openFds();
      await removeBeneath(sys, home, "tmp/t");
      expect(fs.existsSync(t)).toBe(false);
      expect(fs.readdirSync(path.join(home, "tmp"))).toEqual([]);
      expect(snapshot(sentinel)).toEqual(before);
      expect(openFds()).toBe(fds);
    });

    test("a symlink in place of the tree is removed as a link", async () => {
      fs.symlinkSync(sentinel, path.join(home, "tmp", "t"));
      await removeBeneath(sys, home, "tmp/t");
      expect(fs.readdirSync(path.join(home, "tmp"))).toEqual([]);
      expect(snapshot(sentinel)).toEqual(before);
    });

    test("refuses a path that leads through a symlink and leaves its target alone", async () => {
      fs.rmSync(path.join(home, "tmp"), { recursive: true });
      fs.symlinkSync(sentinel, path.join(home, "tmp"));
      await expect(removeBeneath(sys, home, "tmp/sub")).rejects.toThrow(/a symbolic link or a file is on its path/);
      expect(snapshot(sentinel)).toEqual(before);
    });

    test("refuses .., absolute and empty paths before touching anything", async () => {
      for (const rel of ["..", "../sentinel", "/etc", "", "tmp/.."]) {
        await expect(removeBeneath(sys, home, rel)).rejects.toThrow(/Refusing to remove|symbolic link|mount point|EXDEV|ELOOP/);
      }
      expect(snapshot(sentinel)).toEqual(before);
      expect(fs.existsSync(path.join(home, "tmp"))).toBe(true);
    });

    test("a missing entry or parent is nothing to do", async () => {
      await removeBeneath(sys, home, "tmp/none");
      await removeBeneath(sys, home, "none/none");
      expect(fs.existsSync(path.join(home, "tmp"))).toBe(true);
    });

    test("removes a tree deeper than the fds it holds (300 levels)", async () => {
      let p = path.join(home, "tmp", "t");
      fs.mkdirSync(p);
      // Built relative to the working directory so no path passes PATH_MAX while making it.
      const cwd = process.cwd();
      try {
        process.chdir(p);
        for (let i = 0; i < 300; i++) {
          fs.mkdirSync("d");
          fs.writeFileSync("f", String(i));
          process.chdir("d");
        }
      } finally {
        process.chdir(cwd);
      }
      const fds = openFds();
      await removeBeneath(sys, home, "tmp/t");
      expect(fs.readdirSync(path.join(home, "tmp"))).toEqual([]);
      expect(openFds()).toBe(fds);
      p = "";
    });

    test.skipIf(rootUnavailable !== null || !openat2)(
      `refuses to delete into a mount inside the tree${rootUnavailable ? ` (skipped: ${rootUnavailable})` : !openat2 ? " (skipped: only openat2 sees mount crossings)" : ""}`,
      async () => {
        const m = path.join(home, "tmp", "t", "m");
        fs.mkdirSync(m, { recursive: true });
        expect(spawnSync("mount", ["-t", "tmpfs", "tmpfs", m]).status).toBe(0);
        fs.writeFileSync(path.join(m, "mounted-data"), "keep");
        await expect(removeBeneath(sys, home, "tmp/t")).rejects.toThrow(/a mount point is on its path or inside it/);
        expect(fs.readFileSync(path.join(m, "mounted-data"), "utf8")).toBe("keep");
      },
    );

    test("a writer swapping directories for symlinks to the sentinel while the tree goes never reaches it", async () => {
      for (let round = 0; round < 3; round++) {
        const t = path.join(home, "tmp", "t");
        for (let i = 0; i < 200; i++) {
          fs.mkdirSync(path.join(t, `d${i}`, "inner"), { recursive: true });
          fs.writeFileSync(path.join(t, `d${i}`, "inner", "f"), "x");
        }
        // Another process races the removal: it turns each dN into a symlink to the sentinel.
        const racer = spawn(process.execPath, ["-e", RACER, t, sentinel], { stdio: "inherit" });
        await new Promise((resolve) => racer.on("spawn", resolve));
        await removeBeneath(sys, home, "tmp/t").catch(() => {});
        await new Promise((resolve) => racer.on("exit", resolve));
        await removeBeneath(sys, home, "tmp/t");
        expect(snapshot(sentinel)).toEqual(before);
      }
    }, 60_000);
  });
}
