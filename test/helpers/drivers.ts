/**
 * The one table of drivers the tests run against: each driver's init, its temp dir under Home, and
 * why it cannot run here (null when it can). A new driver joins every suite by a row here.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { initErofs } from "../../drivers/erofs/driver.ts";
import { initOverlay } from "../../drivers/overlay/driver.ts";
import { initVfs } from "../../drivers/vfs/driver.ts";
import type { Driver, DriverConfig, IdMap } from "../../src/core/driver.ts";
import { silentLogger } from "../../src/core/log.ts";
import { createSys } from "../../src/sys/bun.ts";
import { overlayUnavailable } from "./overlay-probe.ts";

const sys = createSys();
const isRoot = process.getuid?.() === 0;

/** A driver as the tests know it. */
export interface TestDriver {
  name: "vfs" | "overlay" | "erofs";
  init: (config: DriverConfig) => Promise<Driver>;
  /** Where it builds and deletes, under Home (start-up recovery empties it). */
  tmpDir: string;
  /** Why it cannot run here at all (overlay: no overlay mounts), or null; tests add what they need beyond. */
  skip: string | null;
}

/** Every driver. */
export const TEST_DRIVERS: readonly TestDriver[] = [
  { name: "vfs", init: initVfs, tmpDir: "tmp", skip: null },
  { name: "overlay", init: initOverlay, tmpDir: ".tmp", skip: overlayUnavailable(sys) },
  { name: "erofs", init: initErofs, tmpDir: ".tmp", skip: overlayUnavailable(sys) ?? erofsUnavailable() },
];

/** Why EROFS images cannot be mounted here, or null. */
function erofsUnavailable(): string | null {
  if (!isRoot) return "mounting EROFS images needs root";
  let filesystems = "";
  try {
    filesystems = readFileSync("/proc/filesystems", "utf8");
  } catch {
    // No /proc: treated as no erofs.
  }
  return filesystems.includes("\terofs\n") ? null : "the kernel has no EROFS support";
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
