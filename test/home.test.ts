/**
 * Homes Init must refuse, each with a message naming the path, before anything is created, moved
 * or deleted; and the Homes dockerd and the managed plugin pass, which it must take.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import "../src/drivers.ts";
import { initDriver } from "../src/core/driver.ts";
import { InvalidRequestError } from "../src/core/errors.ts";
import { silentLogger } from "../src/core/log.ts";
import { createApp } from "../src/graphdriver/app.ts";
import { Plugin } from "../src/graphdriver/plugin.ts";
import { HOME_MAX, checkHomePath } from "../src/store/home.ts";
import { createSys } from "../src/sys/bun.ts";
import { snapshot } from "./helpers/tree.ts";

const sys = createSys();

let root: string;
beforeEach(() => void (root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-home-"))));
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const config = (home: string) => ({ home, options: {}, uidMaps: [], gidMaps: [], sys, log: silentLogger });

/** Each case: what, the Home (built from the temp root, which `prepare` may fill), the exact message ({of}: which driver was asked for). */
const CASES: Array<[string, (r: string) => string, (r: string) => string, ((r: string) => void)?]> = [
  ["empty", () => "", () => 'Cannot use "" as Home: it is empty'],
  ["relative", () => "strata-relative-home", () => 'Cannot use "strata-relative-home" as Home: it is not absolute'],
  ["a NUL followed by ..", (r) => `${r}/a\0/../../escape`, (r) => `Cannot use ${JSON.stringify(`${r}/a\0/../../escape`)} as Home: it contains a NUL byte`],
  ["a .. component", (r) => `${r}/home/../../escape`, (r) => `Cannot use "${r}/home/../../escape" as Home: it has a ".." component`],
  ["not normalised", (r) => `${r}//home/./x/`, (r) => `Cannot use "${r}//home/./x/" as Home: it is not normalised ("${r}/home/x")`],
  ["/proc/self", () => "/proc/self", () => 'Cannot use "/proc/self" as Home: it is inside "/proc", a kernel filesystem'],
  ["under /sys", () => "/sys/fs/strata", () => 'Cannot use "/sys/fs/strata" as Home: it is inside "/sys", a kernel filesystem'],
  ["/", () => "/", () => 'Cannot use "/" as Home: it is a system directory'],
  ["/etc", () => "/etc", () => 'Cannot use "/etc" as Home: it is a system directory'],
  ["/tmp itself", () => "/tmp", () => 'Cannot use "/tmp" as Home: it is a system directory'],
  ["/var/lib itself", () => "/var/lib", () => 'Cannot use "/var/lib" as Home: it is a system directory'],
  ["/lib64", () => "/lib64", () => 'Cannot use "/lib64" as Home: it is a system directory'],
  ["very long", (r) => `${r}/${"x/".repeat(600)}home`, (r) => `Cannot use "${`${r}/${"x/".repeat(600)}home`.slice(0, 200)}…" as Home: it is longer than ${HOME_MAX} bytes`],
  ["a non-empty foreign directory", (r) => `${r}/foreign`, (r) => `Cannot use "${r}/foreign" as Home: it is not empty and is not a strata store{of}`,
    (r) => (fs.mkdirSync(`${r}/foreign`), fs.writeFileSync(`${r}/foreign/precious`, "data"))],
  ["a symlink", (r) => `${r}/link`, (r) => `Cannot use "${r}/link" as Home: it is a symbolic link`, (r) => (fs.mkdirSync(`${r}/real`), fs.symlinkSync(`${r}/real`, `${r}/link`))],
  ["a path through a symlink to /", (r) => `${r}/root-link/etc`, (r) => `Cannot use "${r}/root-link/etc" as Home: it resolves to "/etc": it is a system directory`, (r) => fs.symlinkSync("/", `${r}/root-link`)],
  ["a file", (r) => `${r}/file`, (r) => `Cannot use "${r}/file" as Home: it is not a directory`, (r) => fs.writeFileSync(`${r}/file`, "x")],
  ["below a file", (r) => `${r}/file/home`, (r) => `Cannot use "${r}/file/home" as Home: "${r}/file" is not a directory`, (r) => fs.writeFileSync(`${r}/file`, "x")],
];

describe("Init refuses a Home", () => {
  for (const [what, home, message, prepare] of CASES) {
    test(`${what}, naming it, and changes nothing`, async () => {
      prepare?.(root);
      const before = snapshot(root, sys, { dirMtimes: true });
      const cwdBefore = fs.readdirSync(process.cwd()).sort();
      for (const driver of ["vfs", "overlay", "erofs", "btrfs", "auto"]) {
        const err = await initDriver(driver, config(home(root))).catch((e) => e);
        expect(err).toBeInstanceOf(InvalidRequestError);
        expect(err.message).toBe(message(root).replace("{of}", driver === "auto" ? "" : ` of the ${driver} driver`));
      }
      expect(snapshot(root, sys, { dirMtimes: true })).toEqual(before);
      expect(fs.readdirSync(process.cwd()).sort()).toEqual(cwdBefore);
      expect(fs.existsSync(path.join(path.dirname(root), "escape"))).toBe(false);
    });
  }

  test("through the GraphDriver protocol: 400 with the message in Err, and no state saved", async () => {
    fs.mkdirSync(path.join(root, "foreign"));
    fs.writeFileSync(path.join(root, "foreign", "precious"), "data");
    const app = createApp(new Plugin({ sys, stateDir: path.join(root, "state"), defaultDriver: "auto", log: silentLogger }));
    const res = await app.fetch(new Request("http://plugin/GraphDriver.Init", {
      method: "POST",
      body: JSON.stringify({ Home: path.join(root, "foreign"), Opts: [], UIDMaps: [], GIDMaps: [] }) + "\n",
    }));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ Err: `Cannot use "${path.join(root, "foreign")}" as Home: it is not empty and is not a strata store` });
    expect(fs.readdirSync(root)).toEqual(["foreign"]);
  });
});

describe("Init takes a Home", () => {
  test("that dockerd, userns-remap and the managed plugin pass (checked as paths)", () => {
    for (const home of ["/var/lib/docker/strata", "/var/lib/docker/100000.100000/strata", "/data/strata:0.1.0", "/tmp/strata-x/home", "/mnt/disk/docker/strata"]) {
      expect(() => checkHomePath(home)).not.toThrow();
    }
  });

  test("that is missing, with its parents, or empty but for lost+found", async () => {
    const deep = path.join(root, "a", "b", "home");
    await (await initDriver("vfs", config(deep))).cleanup();
    expect(fs.readdirSync(deep).sort()).toEqual([".strata-store", "dir", "meta", "tmp"]);
    fs.mkdirSync(path.join(root, "fs", "lost+found"), { recursive: true });
    await (await initDriver("vfs", config(path.join(root, "fs")))).cleanup();
  });

  test("a fresh Home whose Init fails is put back as it was", async () => {
    const home = path.join(root, "a", "b", "home");
    const err = await initDriver("overlay", { ...config(home), options: { nonsense: "1" } }).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidRequestError);
    const vfsErr = await initDriver("vfs", { ...config(home), options: { size: "1" } }).catch((e) => e);
    expect(vfsErr).toBeInstanceOf(InvalidRequestError);
    expect(fs.readdirSync(root)).toEqual([]);
  });

  test("whose marker a power cut left empty (the marker's first write lost): known by its layout, marked again", async () => {
    const home = path.join(root, "home");
    await (await initDriver("vfs", config(home))).cleanup();
    const marker = path.join(home, ".strata-store");
    expect(JSON.parse(fs.readFileSync(marker, "utf8"))).toEqual({ driver: "vfs" });
    fs.truncateSync(marker, 0);
    // A marker temp a crash left behind is no store content either.
    fs.writeFileSync(path.join(home, ".strata-store.4242.tmp"), "");
    await (await initDriver("vfs", config(home))).cleanup();
    expect(JSON.parse(fs.readFileSync(marker, "utf8"))).toEqual({ driver: "vfs" });
    // An empty marker does not make a foreign directory a store.
    const foreign = path.join(root, "foreign");
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, "data"), "x");
    fs.writeFileSync(path.join(foreign, ".strata-store"), "");
    const err = await initDriver("vfs", config(foreign)).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect(fs.readFileSync(path.join(foreign, ".strata-store"), "utf8")).toBe("");
  });
});
