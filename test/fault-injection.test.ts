/**
 * Crash consistency: the plugin, run as a real process, SIGKILLs itself at each fault point
 * (`src/fault.ts`) in the middle of a call; started again on the same state dir (no new Init, as
 * after dockerd restarts a dead plugin), it must show the interrupted layer either as it was or
 * finished (or absent), every other layer as it was, nothing left in its temp dir, no mounts but
 * the ones a running container holds, and it must go on serving.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FAULT, FAULT_ENV, FAULT_MID_EXTRACT_ENTRIES, type FaultName } from "../src/core/fault.ts";
import { createSys } from "../src/sys/bun.ts";
import { entry, file, makeTar } from "./helpers/layer-tar.ts";
import { TEST_DRIVERS, rootUnavailable, sizeLimitsUnavailable, makeTempRoot, removeTempRoot } from "./helpers/drivers.ts";
import { type ChildExit, PLUGIN_COMMANDS, PluginChild } from "./helpers/plugin-child.ts";
import type { RawResponse } from "./helpers/raw-http.ts";
import { type NodeInfo, snapshot } from "./helpers/tree.ts";
import { mountsBelow, unmountBelow } from "./helpers/mounts.ts";

const sys = createSys();

/**
 * Each driver under test, its Init options, and its temp dir under Home (which startup recovery
 * must leave empty). "overlay-sized" makes every read-write layer size-limited (its own image).
 */
const DRIVERS: ReadonlyArray<{ name: DriverName; driver: string; opts: string[]; tmpDir: string; skip: string | null }> = [
  ...TEST_DRIVERS.map((d) => ({ name: d.name, driver: d.name, opts: [], tmpDir: d.tmpDir, skip: rootUnavailable ?? d.skip })),
  { name: "overlay-sized", driver: "overlay", opts: ["strata.size=32M"], tmpDir: ".tmp", skip: rootUnavailable ?? sizeLimitsUnavailable },
];

type DriverName = (typeof TEST_DRIVERS)[number]["name"] | "overlay-sized";

/** What the interrupted layer must look like after the restart ("created": a new empty layer, finished by recovery). */
type Outcome = "absent" | "unchanged" | "applied" | "created";

interface FaultCase {
  point: FaultName;
  /** Shown in the test name when a point is reached through more than one call. */
  via: string;
  /** Make the victim layer (or not) before the fatal call. */
  prepare(p: PluginChild): Promise<void>;
  fatal(p: PluginChild): Promise<RawResponse>;
  /** Per driver; a driver without an entry does not pass through this point this way. */
  outcome: Partial<Record<DriverName, Outcome>>;
  /** The crash comes before anything reaches the temp dir. */
  nothingInTemp?: boolean;
  /** The next start crashes too, in the middle of its recovery's removals; the one after must finish the job. */
  recoveryCrash?: boolean;
}

const VICTIM = "victim";

const BASE_TAR = await makeTar([
  entry({ name: "etc/", type: "directory" }),
  file("etc/os-release", "ID=strata\n"),
  file("bin/tool", "#!/bin/sh\necho tool\n", { mode: 0o755 }),
  entry({ name: "bin/sh", type: "symlink", linkname: "tool" }),
  entry({ name: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3 }),
  file("usr/share/doc/readme", "read me"),
]);
const KEPT_TAR = await makeTar([
  file("etc/os-release", "ID=strata\nVERSION=2\n"),
  entry({ name: "usr/share/doc/.wh.readme" }),
  file("opt/app/data", "d".repeat(100_000), { uid: 1000, gid: 1000 }),
]);
/** Enough entries that the mid-extract point fires with most of the tar still unread. */
const VICTIM_TAR = await makeTar([
  ...Array.from({ length: 4 * FAULT_MID_EXTRACT_ENTRIES }, (_, i) => file(`victim/file-${i}`, `content ${i}\n`.repeat(50))),
  file("victim/big", "b".repeat(300_000)),
  file("etc/os-release", "ID=victim\n"),
  entry({ name: "opt/app/.wh.data" }),
]);
const AFTER_TAR = await makeTar([file("after/proof", "still serving")]);

const createVictim = (method: string) => (p: PluginChild) => p.call(`GraphDriver.${method}`, { ID: VICTIM, Parent: "kept" });
const applyVictim = (p: PluginChild) => p.applyDiff(VICTIM, "kept", VICTIM_TAR);
/** A victim with content: an image layer (Create) or a container layer (CreateReadWrite). */
const appliedVictim = (method: "Create" | "CreateReadWrite") => async (p: PluginChild) => {
  await p.ok(`GraphDriver.${method}`, { ID: VICTIM, Parent: "kept", MountLabel: "", StorageOpt: {} });
  await p.okApply(VICTIM, "kept", VICTIM_TAR);
};
const removeVictim = (p: PluginChild) => p.call("GraphDriver.Remove", { ID: VICTIM });

const CASES: FaultCase[] = [
  {
    point: FAULT.createBeforeRename, via: "Create", prepare: async () => {}, fatal: createVictim("Create"),
    outcome: { vfs: "absent", overlay: "absent", btrfs: "absent", "overlay-sized": "absent", erofs: "absent" },
  },
  {
    point: FAULT.createBeforeRename, via: "CreateReadWrite", prepare: async () => {}, fatal: createVictim("CreateReadWrite"),
    outcome: { vfs: "absent", overlay: "absent", btrfs: "absent", "overlay-sized": "absent", erofs: "absent" },
  },
  {
    // The image is complete once placed: the next start mounts it and the layer is there, empty.
    point: FAULT.createBeforeMount, via: "CreateReadWrite", prepare: async () => {}, fatal: createVictim("CreateReadWrite"),
    outcome: { "overlay-sized": "created" },
  },
  {
    point: FAULT.applyMidExtract, via: "ApplyDiff", prepare: async (p) => void (await p.ok("GraphDriver.Create", { ID: VICTIM, Parent: "kept" })),
    fatal: applyVictim, outcome: { vfs: "unchanged", overlay: "unchanged", btrfs: "unchanged", "overlay-sized": "unchanged", erofs: "unchanged" },
  },
  {
    // vfs stops between moving the old tree out and the new one in: recovery finishes the swap.
    // overlay's and btrfs's swap is one renameat2(RENAME_EXCHANGE): not reached means not done. erofs's image
    // is renamed into the layer last: not reached, the layer has none.
    point: FAULT.applyBeforeSwap, via: "ApplyDiff", prepare: async (p) => void (await p.ok("GraphDriver.Create", { ID: VICTIM, Parent: "kept" })),
    fatal: applyVictim, outcome: { vfs: "applied", overlay: "unchanged", btrfs: "unchanged", "overlay-sized": "unchanged", erofs: "unchanged" },
  },
  {
    point: FAULT.removeBeforeDelete, via: "Remove", prepare: appliedVictim("Create"), fatal: removeVictim,
    outcome: { vfs: "absent", overlay: "absent", btrfs: "absent", "overlay-sized": "absent", erofs: "absent" },
  },
  {
    point: FAULT.removeBeforeDelete, via: "Remove of a container layer", prepare: appliedVictim("CreateReadWrite"), fatal: removeVictim,
    outcome: { vfs: "absent", overlay: "absent", btrfs: "absent", "overlay-sized": "absent", erofs: "absent" },
  },
  {
    // Unmounted but its image still in place: the layer comes back whole rather than half deleted.
    point: FAULT.removeAfterUnmount, via: "Remove of a container layer", prepare: appliedVictim("CreateReadWrite"), fatal: removeVictim,
    outcome: { "overlay-sized": "unchanged" },
    nothingInTemp: true,
  },
  {
    // The size-limited layer's filesystem is built and still mounted in `.tmp/`: the next start unmounts and deletes it.
    point: FAULT.createStagingMounted, via: "CreateReadWrite", prepare: async () => {}, fatal: createVictim("CreateReadWrite"),
    outcome: { "overlay-sized": "absent" },
  },
  {
    // vfs's new tree is published in `.tmp/` beside the old layer, which is still in place: the apply is dropped.
    point: FAULT.applyReady, via: "ApplyDiff", prepare: async (p) => void (await p.ok("GraphDriver.Create", { ID: VICTIM, Parent: "kept" })),
    fatal: applyVictim, outcome: { vfs: "unchanged" },
  },
  {
    // Recovery itself cut short while it deletes the removed layer from the temp dir: the start after finishes it.
    point: FAULT.removeBeforeDelete, via: "Remove, then a crash during recovery", prepare: appliedVictim("Create"), fatal: removeVictim,
    outcome: { vfs: "absent", overlay: "absent", "overlay-sized": "absent", erofs: "absent" },
    recoveryCrash: true,
  },
  {
    // Recovery cut short while it deletes an apply's leftovers (overlay's and btrfs's staging, erofs's image being written).
    point: FAULT.applyMidExtract, via: "ApplyDiff, then a crash during recovery", prepare: async (p) => void (await p.ok("GraphDriver.Create", { ID: VICTIM, Parent: "kept" })),
    fatal: applyVictim, outcome: { vfs: "unchanged", overlay: "unchanged", "overlay-sized": "unchanged" },
    recoveryCrash: true,
  },
];

/** The layer's tree as Get shows it (a mount for overlay layers with a parent), released after. */
async function layerSnapshot(p: PluginChild, id: string): Promise<Record<string, NodeInfo>> {
  const dir = (await p.ok("GraphDriver.Get", { ID: id, MountLabel: "" })).Dir as string;
  try {
    return snapshot(dir, sys);
  } finally {
    await p.ok("GraphDriver.Put", { ID: id });
  }
}

/** Mount points under `dir`, sorted. */
function mountsIn(dir: string): string[] {
  return mountsBelow(dir).map((m) => m.mountPoint).sort();
}

/** Mounts of layer views under Home: everything but the size-limited layers' own filesystems (`Home/<id>`). */
function viewMounts(home: string): string[] {
  const real = fs.realpathSync(home);
  return mountsIn(home).filter((mp) => path.dirname(mp) !== real);
}

/** Each size-limited layer's image is mounted on its directory, and nothing else is mounted there. */
function expectImagesMounted(home: string): void {
  const real = fs.realpathSync(home);
  const mounted = mountsIn(home).filter((mp) => path.dirname(mp) === real).map((mp) => path.basename(mp)).sort();
  const images = fs.existsSync(path.join(home, ".quota")) ? fs.readdirSync(path.join(home, ".quota")).map((n) => n.replace(/\.img$/, "")).sort() : [];
  expect(mounted).toEqual(images);
}

/** How the process ended, or null when it still runs after `ms`. */
function exitWithin(p: PluginChild, ms: number): Promise<ChildExit | null> {
  return Promise.race([p.exited, Bun.sleep(ms).then(() => null)]);
}

/** One test's plugins, on its own temp root. */
interface Run {
  root: string;
  home: string;
  start(fault?: FaultName): Promise<PluginChild>;
}

/** Make a run's temp root; `start` spawns the plugin with `command` (default: Bun on the source). */
function newRun(drv: (typeof DRIVERS)[number], plugins: PluginChild[], command?: readonly string[]): Run {
  const root = makeTempRoot(drv.driver, `strata-fault-${drv.name}-`);
  const start = async (fault?: FaultName) => {
    const p = await PluginChild.start({
      driver: drv.driver,
      socket: path.join(root, "p.sock"),
      stateDir: path.join(root, "state"),
      logFile: path.join(root, "plugin.log"),
      env: { [FAULT_ENV]: fault },
      command,
    }, command === PLUGIN_COMMANDS.deno ? 120_000 : 20_000);
    plugins.push(p);
    return p;
  };
  return { root, home: path.join(root, "home"), start };
}

/**
 * A fresh Run for each test of the describe it is called in (plugins run with `command`), its
 * plugins stopped and its root unmounted and removed after; returns a getter for the current one.
 */
function runsFor(drv: (typeof DRIVERS)[number], command?: readonly string[]): () => Run {
  let run: Run;
  let plugins: PluginChild[];
  beforeEach(() => {
    if (drv.skip) return;
    // Under CI the binary is built before the tests (scripts/test.sh): missing, it is a failure.
    if (command !== undefined && !fs.existsSync(command[0]!)) throw new Error(`${command[0]} is missing: run ./compile.sh (npm ci for deno)`);
    plugins = [];
    run = newRun(drv, plugins, command);
  });
  afterEach(async () => {
    if (drv.skip) return;
    for (const p of plugins) await p.stop();
    unmountBelow(sys, run.root);
    removeTempRoot(run.root);
  });
  return () => run;
}

/** A start that must die of its own fault point while it recovers, before it ever serves. */
async function crashDuringStart(run: Run, fault: FaultName): Promise<void> {
  const err = await run.start(fault).then(() => null, (e: Error) => e);
  expect(err?.message ?? "served").toStartWith('The plugin exited during start ({"code":null,"signal":"SIGKILL"})');
}

/** Set up, crash at `c.point` during `c.fatal`, start again and check what the restart shows. */
async function runCase(run: Run, drv: (typeof DRIVERS)[number], c: FaultCase): Promise<void> {
  const { home, start } = run;
  // Set up in a plugin without the fault: the setup's own Creates and ApplyDiffs pass the same points.
  const first = await start();
  await first.ok("GraphDriver.Init", { Home: home, Opts: drv.opts, UIDMaps: null, GIDMaps: null });
  await first.ok("GraphDriver.Create", { ID: "base", Parent: "" });
  await first.okApply("base", "", BASE_TAR);
  await first.ok("GraphDriver.Create", { ID: "kept", Parent: "base" });
  await first.okApply("kept", "base", KEPT_TAR);
  // A container running across the crash: its mount must survive and be adopted.
  await first.ok("GraphDriver.CreateReadWrite", { ID: "running", Parent: "kept", MountLabel: "", StorageOpt: {} });
  const runningDir = (await first.ok("GraphDriver.Get", { ID: "running", MountLabel: "" })).Dir as string;
  fs.writeFileSync(path.join(runningDir, "written-by-container"), "alive");
  const committed = { base: await layerSnapshot(first, "base"), kept: await layerSnapshot(first, "kept") };
  await c.prepare(first);
  const victimBefore = c.outcome[drv.name] === "unchanged" ? await layerSnapshot(first, VICTIM) : null;
  const heldMounts = viewMounts(home);
  expect(await first.terminate()).toEqual({ code: 0, signal: null });

  const doomed = await start(c.point);
  const answer = await c.fatal(doomed).catch((err: Error) => err);
  const exit = await exitWithin(doomed, 10_000);
  if (exit === null) throw new Error(`The plugin lives on after the fatal call (it answered ${answer instanceof Error ? answer.message : answer.body})`);
  expect(exit).toEqual({ code: null, signal: "SIGKILL" });
  expect(answer instanceof Error || answer.status !== 200 || answer.body.length === 0).toBe(true);
  // The crash came mid-operation: what it left is recovery's to clear.
  if (!c.nothingInTemp) expect(fs.readdirSync(path.join(home, drv.tmpDir)).length).toBeGreaterThan(0);

  const second = await start();
  expect(fs.readdirSync(path.join(home, drv.tmpDir))).toEqual([]);
  expect(viewMounts(home)).toEqual(heldMounts);
  expectImagesMounted(home);
  expect(await layerSnapshot(second, "base")).toEqual(committed.base);
  expect(await layerSnapshot(second, "kept")).toEqual(committed.kept);

  const exists = (await second.ok("GraphDriver.Exists", { ID: VICTIM })).Exists;
  const outcome = c.outcome[drv.name]!;
  expect(exists).toBe(outcome !== "absent");
  if (outcome === "unchanged") expect(await layerSnapshot(second, VICTIM)).toEqual(victimBefore!);
  if (outcome === "applied") {
    await second.ok("GraphDriver.Create", { ID: "reference", Parent: "kept" });
    await second.okApply("reference", "kept", VICTIM_TAR);
    expect(await layerSnapshot(second, VICTIM)).toEqual(await layerSnapshot(second, "reference"));
    await second.ok("GraphDriver.Remove", { ID: "reference" });
  }
  if (outcome === "created") {
    await second.ok("GraphDriver.CreateReadWrite", { ID: "reference", Parent: "kept", MountLabel: "", StorageOpt: {} });
    expect(await layerSnapshot(second, VICTIM)).toEqual(await layerSnapshot(second, "reference"));
    await second.ok("GraphDriver.Remove", { ID: "reference" });
  }
  if (drv.name === "vfs" || drv.name === "btrfs") {
    // A parent record without its layer would make a later layer of the same ID look like a child.
    const layers = drv.name === "vfs" ? "dir" : "subvolumes";
    expect(fs.readdirSync(path.join(home, "meta")).sort()).toEqual(fs.readdirSync(path.join(home, layers)).sort());
  } else if (drv.driver === "overlay") {
    for (const link of fs.readdirSync(path.join(home, ".l"))) {
      const id = /^\.\.\/([^/]+)\/diff$/.exec(fs.readlinkSync(path.join(home, ".l", link)))?.[1];
      expect([link, id && fs.readFileSync(path.join(home, id, "link"), "utf8")]).toEqual([link, link]);
    }
  }

  // The adopted container layer: same place, its write kept, released by the daemon's Put.
  expect((await second.ok("GraphDriver.Get", { ID: "running", MountLabel: "" })).Dir).toBe(runningDir);
  expect(fs.readFileSync(path.join(runningDir, "written-by-container"), "utf8")).toBe("alive");
  await second.ok("GraphDriver.Put", { ID: "running" });
  await second.ok("GraphDriver.Put", { ID: "running" });
  expect(viewMounts(home)).toEqual([]);

  const refused = await second.call("GraphDriver.Remove", { ID: "kept" });
  expect(refused.status).toBe(409);
  expect(JSON.parse(refused.body.toString()).Err).toStartWith('Cannot remove layer "kept": ');

  await second.ok("GraphDriver.Create", { ID: "after", Parent: "kept" });
  await second.okApply("after", "kept", AFTER_TAR);
  const afterTree = await layerSnapshot(second, "after");
  expect(afterTree["/after/proof"]).toMatchObject({ type: "file", size: "still serving".length });
  expect(afterTree["/etc/os-release"]).toEqual(committed.kept["/etc/os-release"]);
  for (const id of ["after", VICTIM, "running", "kept", "base"]) await second.ok("GraphDriver.Remove", { ID: id });
  for (const id of ["after", VICTIM, "running", "kept", "base"]) expect((await second.ok("GraphDriver.Exists", { ID: id })).Exists).toBe(false);
  expect(fs.readdirSync(path.join(home, drv.tmpDir))).toEqual([]);
  expect(mountsIn(home)).toEqual([]);
}

for (const drv of DRIVERS) {
  describe(`SIGKILL inside the ${drv.name} driver`, () => {
    const run = runsFor(drv);

    for (const c of CASES.filter((c) => c.outcome[drv.name] !== undefined)) {
      const name = `${c.point} (${c.via}): the layer is ${c.outcome[drv.name]}, everything else intact, serving again`;
      test.skipIf(drv.skip !== null)(drv.skip === null ? name : `${name} (skipped: ${drv.skip})`, () => runCase(run(), drv, c), 30_000);
    }
  });
}

/** The overlay driver as DRIVERS has it. */
const OVERLAY = DRIVERS.find((d) => d.name === "overlay")!;

describe("SIGKILL between a child's rename and its parent's committed marker (overlay)", () => {
  const runs = runsFor(OVERLAY);

  test.skipIf(OVERLAY.skip !== null)(`the next start marks the parent, so it mounts read-only as before${OVERLAY.skip ? ` (skipped: ${OVERLAY.skip})` : ""}`, async () => {
    const run = runs();
    const first = await run.start();
    await first.ok("GraphDriver.Init", { Home: run.home, Opts: [], UIDMaps: null, GIDMaps: null });
    await first.ok("GraphDriver.Create", { ID: "base", Parent: "" });
    await first.okApply("base", "", BASE_TAR);
    await first.ok("GraphDriver.Create", { ID: "mid", Parent: "base" });
    await first.okApply("mid", "base", KEPT_TAR);
    expect(await first.terminate()).toEqual({ code: 0, signal: null });
    const marker = path.join(run.home, "mid", "committed");
    expect(fs.existsSync(marker)).toBe(false);

    const doomed = await run.start(FAULT.createBeforeMarkParent);
    await doomed.call("GraphDriver.Create", { ID: "top", Parent: "mid" }).catch(() => null);
    expect(await exitWithin(doomed, 10_000)).toEqual({ code: null, signal: "SIGKILL" });
    expect(fs.existsSync(marker)).toBe(false);

    const second = await run.start();
    expect(fs.existsSync(marker)).toBe(true);
    expect((await second.ok("GraphDriver.Exists", { ID: "top" })).Exists).toBe(true);
    // A sealed layer's mount refuses writes: the image layer under "top" cannot change.
    const dir = (await second.ok("GraphDriver.Get", { ID: "mid", MountLabel: "" })).Dir as string;
    const err = (() => {
      try {
        fs.writeFileSync(path.join(dir, "changed"), "x");
        return null;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code;
      }
    })();
    expect(err).toBe("EROFS");
    await second.ok("GraphDriver.Put", { ID: "mid" });
  }, 30_000);
});

describe("SIGKILL between Init's driver start and its saved state", () => {
  const VFS = DRIVERS.find((d) => d.name === "vfs")!;
  const runs = runsFor(VFS);

  test.skipIf(VFS.skip !== null)(`the next start serves the Home of the Init saved before, or waits for Init when there was none${VFS.skip ? ` (skipped: ${VFS.skip})` : ""}`, async () => {
    const run = runs();
    const other = path.join(run.root, "other-home");
    const state = path.join(run.root, "state", "state.json");
    // No Init saved yet: the crash leaves none, and the next start waits for one.
    const firstEver = await run.start(FAULT.initBeforeSave);
    await firstEver.call("GraphDriver.Init", { Home: other, Opts: [], UIDMaps: null, GIDMaps: null }).catch(() => null);
    expect(await exitWithin(firstEver, 10_000)).toEqual({ code: null, signal: "SIGKILL" });
    expect(fs.existsSync(state)).toBe(false);
    const waiting = await run.start();
    const refused = await waiting.call("GraphDriver.Exists", { ID: "layer" });
    expect(JSON.parse(refused.body.toString()).Err).toBe("Plugin is not initialised: the daemon has not sent Init yet");
    await waiting.ok("GraphDriver.Init", { Home: run.home, Opts: [], UIDMaps: null, GIDMaps: null });
    await waiting.ok("GraphDriver.Create", { ID: "layer", Parent: "" });
    expect(await waiting.terminate()).toEqual({ code: 0, signal: null });

    // An Init to another Home, cut short: the saved one still names the first Home, which serves again.
    const doomed = await run.start(FAULT.initBeforeSave);
    await doomed.call("GraphDriver.Init", { Home: other, Opts: [], UIDMaps: null, GIDMaps: null }).catch(() => null);
    expect(await exitWithin(doomed, 10_000)).toEqual({ code: null, signal: "SIGKILL" });
    expect(JSON.parse(fs.readFileSync(state, "utf8")).Home).toBe(run.home);
    const second = await run.start();
    expect((await second.ok("GraphDriver.Exists", { ID: "layer" })).Exists).toBe(true);
  }, 60_000);
});

describe("SIGKILL in the compiled binary and on Deno (overlay)", () => {
  // The points every front end's calls pass; each runtime must crash at them and recover the same way.
  const picked = CASES.filter((c) => !c.recoveryCrash && c.outcome.overlay !== undefined);
  for (const [runtime, command] of [["binary", PLUGIN_COMMANDS.binary], ["deno", PLUGIN_COMMANDS.deno]] as const) {
    describe(runtime, () => {
      const run = runsFor(OVERLAY, command);
      for (const c of picked) {
        const name = `${c.point} (${c.via}): the layer is ${c.outcome.overlay}, everything else intact, serving again`;
        test.skipIf(OVERLAY.skip !== null)(OVERLAY.skip === null ? name : `${name} (skipped: ${OVERLAY.skip})`, () => runCase(run(), OVERLAY, c), 180_000);
      }
    });
  }
});
