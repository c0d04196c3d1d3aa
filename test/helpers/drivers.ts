/**
 * The one table of drivers the tests run against: each driver's init, its temp dir under Home, and
 * why it cannot run here (null when it can). A new driver joins every suite by a row here.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBtrfs } from "../../drivers/btrfs/driver.ts";
import { initErofs } from "../../drivers/erofs/driver.ts";
import { initOverlay } from "../../drivers/overlay/driver.ts";
import { initVfs } from "../../drivers/vfs/driver.ts";
import type { Driver, DriverConfig, IdMap } from "../../src/core/driver.ts";
import { silentLogger } from "../../src/core/log.ts";
import { createSys } from "../../src/sys/bun.ts";
import { btrfsTempRoot, btrfsUnavailable, removeBtrfsTree } from "./btrfs-root.ts";
import { overlayUnavailable } from "./overlay-probe.ts";

const sys = createSys();
const isRoot = process.getuid?.() === 0;

/** A driver as the tests know it. */
export interface TestDriver {
  name: "vfs" | "overlay" | "erofs" | "btrfs";
  init: (config: DriverConfig) => Promise<Driver>;
  /** Where it builds and deletes, under Home (start-up recovery empties it). */
  tmpDir: string;
  /** Why it cannot run here at all (overlay: no overlay mounts), or null; tests add what they need beyond. */
  skip: string | null;
  /** The directory its tests' temp roots go in (btrfs: a btrfs image this process mounts on first use). */
  tmpRoot(): string;
}

// A root run that must test every driver (CI, the e2e stages) fails here rather than skip btrfs;
// not as root every mount test skips by design.
if (isRoot && btrfsUnavailable !== null && (process.env.CI === "true" || process.env.STRATA_E2E === "1")) {
  throw new Error(`This run must test the btrfs driver, but this host cannot: ${btrfsUnavailable}`);
}

/** Every driver. */
export const TEST_DRIVERS: readonly TestDriver[] = [
  { name: "vfs", init: initVfs, tmpDir: "tmp", skip: null, tmpRoot: os.tmpdir },
  { name: "overlay", init: initOverlay, tmpDir: ".tmp", skip: overlayUnavailable(sys), tmpRoot: os.tmpdir },
  { name: "erofs", init: initErofs, tmpDir: ".tmp", skip: overlayUnavailable(sys) ?? erofsUnavailable(), tmpRoot: os.tmpdir },
  { name: "btrfs", init: initBtrfs, tmpDir: "tmp", skip: btrfsUnavailable, tmpRoot: btrfsTempRoot },
];

/** Why EROFS images cannot be mounted here, or null. */
function erofsUnavailable(): string | null {
  if (!isRoot) return "mounting EROFS images needs root";
  let filesystems = "";
  try {
    filesystems = fs.readFileSync("/proc/filesystems", "utf8");
  } catch {
    // No /proc: treated as no erofs.
  }
  return filesystems.includes("\terofs\n") ? null : "the kernel has no EROFS support";
}

/** The table's row for `name`. */
export function testDriver(name: string): TestDriver {
  const d = TEST_DRIVERS.find((x) => x.name === name);
  if (d === undefined) throw new Error(`No test driver "${name}"`);
  return d;
}

/** A fresh temp root `<prefix>XXXXXX` for a test of driver `name` (any other name: the system temp dir). */
export function makeTempRoot(name: string, prefix: string): string {
  const d = TEST_DRIVERS.find((x) => x.name === name);
  return fs.mkdtempSync(path.join(d === undefined ? os.tmpdir() : d.tmpRoot(), prefix));
}

/** Delete a temp root of `makeTempRoot`, read-only btrfs subvolumes included (mounts below it are the caller's). */
export function removeTempRoot(root: string): void {
  if (btrfsUnavailable === null && root.startsWith(`${btrfsTempRoot()}/`)) removeBtrfsTree(root);
  else fs.rmSync(root, { recursive: true, force: true });
}

/** Why a test that sets file owners, makes device nodes or mounts cannot run here, or null. */
export const rootUnavailable: string | null = isRoot ? null : "it needs root (file owners, device nodes, mounts)";

/** Why size-limited overlay layers cannot be tested here, or null. */
export const sizeLimitsUnavailable: string | null =
  overlayUnavailable(sys) ?? (spawnSync("sh", ["-c", "command -v mkfs.ext4"]).status === 0 ? null : "mkfs.ext4 (e2fsprogs) is not installed");

/** A new driver of `d` on `home`. */
export function newDriver(
  d: TestDriver, home: string, options: Record<string, string> = {}, maps: { uidMaps?: IdMap[]; gidMaps?: IdMap[] } = {},
): Promise<Driver> {
  return d.init({ home, options, uidMaps: maps.uidMaps ?? [], gidMaps: maps.gidMaps ?? [], sys, log: silentLogger });
}

/** A test's name, with the reason when it is skipped. */
export function named(name: string, skip: string | null | undefined): string {
  return skip ? `${name} (skipped: ${skip})` : name;
}
