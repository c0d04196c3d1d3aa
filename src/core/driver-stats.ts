/**
 * What a driver can say about itself for metrics, beyond the Driver interface: an optional method,
 * so a driver without it still gets its layers counted (`layerIds`) and no mounts or size limits.
 */
import type { Driver } from "./driver.ts";

/** One size-limited layer's limit and use. */
export interface SizeLimitedUse {
  id: string;
  /** The limit (the image's size), in bytes. */
  limitBytes: number;
  /** Bytes used inside it (its filesystem's blocks in use); 0 while it is not mounted. */
  usedBytes: number;
}

/** A driver's counts at one moment. */
export interface DriverStats {
  layers: number;
  /** Mounts the driver holds (layer mounts, lower stacks). */
  mounts: number;
  sizeLimited: SizeLimitedUse[];
}

/** A driver that reports {@link DriverStats}. */
export interface StatsDriver {
  stats(): Promise<DriverStats>;
}

/**
 * The driver's stats: its own `stats()` when it has one, else its layer count.
 * @example
 * const { layers, mounts } = await driverStats(driver);
 */
export async function driverStats(driver: Driver): Promise<DriverStats> {
  const own = (driver as Partial<StatsDriver>).stats;
  if (typeof own === "function") return await own.call(driver);
  return { layers: (await driver.layerIds()).length, mounts: 0, sizeLimited: [] };
}
