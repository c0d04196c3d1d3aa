/**
 * A Driver seen through metrics: the bytes ApplyDiff reads and Diff writes are counted as they
 * stream, and the driver's layers, mounts and size-limited layers are read at each scrape. Used by
 * the front ends; the driver itself knows nothing of metrics.
 */
import type { Driver } from "./driver.ts";
import { driverStats } from "./driver-stats.ts";
import { type Collector, type Metrics, countBytes } from "./metrics.ts";

const _cache = new WeakMap<Driver, WeakMap<Metrics, Driver>>();

/**
 * `driver` with ApplyDiff's input and Diff's output counted into `metrics`
 * (`strata_applied_bytes_total`, `strata_exported_bytes_total`); one wrapper per driver and registry.
 * @example
 * const counted = meteredDriver(driver, metrics);
 * await counted.applyDiff("abc", "", tar); // strata_applied_bytes_total{driver="vfs"} grows by the tar's size
 */
export function meteredDriver(driver: Driver, metrics: Metrics): Driver {
  let byMetrics = _cache.get(driver);
  if (!byMetrics) _cache.set(driver, (byMetrics = new WeakMap()));
  const known = byMetrics.get(metrics);
  if (known) return known;
  const labels = { driver: driver.name };
  const applied = (n: number) => metrics.count("strata_applied_bytes_total", "Layer tar bytes received by ApplyDiff.", labels, n);
  const exported = (n: number) => metrics.count("strata_exported_bytes_total", "Layer tar bytes sent by Diff.", labels, n);
  const own: Partial<Driver> = {
    applyDiff: (id, parent, tar) => driver.applyDiff(id, parent, countBytes(tar, applied)),
    diff: async (id, parent) => countBytes(await driver.diff(id, parent), exported),
  };
  // A Proxy, not a prototype: class drivers keep #private state, which methods only reach with `this` the driver itself.
  const metered = new Proxy(driver, {
    get(target, prop) {
      if (prop in own) return own[prop as keyof Driver];
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  byMetrics.set(metrics, metered);
  return metered;
}

/**
 * A collector of the driver `current()` returns (it may throw before Init: that scrape then has
 * no driver gauges): layers and mounts by driver, size-limited layers with their limit and use.
 */
export function driverCollector(current: () => Driver): Collector {
  return async () => {
    const driver = current();
    const stats = await driverStats(driver);
    const d = { driver: driver.name };
    return [
      { name: "strata_layers", help: "Layers in the store, by driver.", labels: d, value: stats.layers },
      { name: "strata_mounts", help: "Mounts the driver holds (layer mounts and lower stacks), by driver.", labels: d, value: stats.mounts },
      { name: "strata_size_limited_layers", help: "Layers with a size limit (their own filesystem image), by driver.", labels: d, value: stats.sizeLimited.length },
      ...stats.sizeLimited.flatMap((u) => [
        { name: "strata_size_limit_bytes", help: "A size-limited layer's limit.", labels: { ...d, layer: u.id }, value: u.limitBytes },
        { name: "strata_size_used_bytes", help: "Bytes in use inside a size-limited layer.", labels: { ...d, layer: u.id }, value: u.usedBytes },
      ]),
    ];
  };
}
