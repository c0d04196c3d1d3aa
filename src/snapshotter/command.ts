/** `strata snapshotter`: the containerd proxy snapshotter over a strata driver, until SIGTERM. */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { firstAvailable, initDriver, registeredDrivers } from "../core/driver.ts";
import { InvalidRequestError } from "../core/errors.ts";
import { MIN_SIZE, parseSize } from "../core/size-units.ts";
import type { Logger } from "../core/log.ts";
import { Metrics, processCollector } from "../core/metrics.ts";
import { type MetricsAddress, serveMetrics } from "../core/metrics-server.ts";
import type { ListenTcp, ListenUnix } from "../serve/types.ts";
import { untilStopped } from "../core/signals.ts";
import { prepareSocketPath, releaseSocketPath, secureSocket } from "../core/socket.ts";
import { checkHomePath } from "../store/home.ts";
import type { OpenDatabase } from "../store/sqlite/types.ts";
import type { Sys } from "../sys/types.ts";
import { Metadata } from "./metadata.ts";
import { listenSnapshotter } from "./server.ts";
import { SnapshotService } from "./service.ts";

/** What `strata snapshotter` was asked for. */
export interface SnapshotterCommand {
  driver: string;
  socket: string;
  root: string;
  log: Logger;
  sys: Sys;
  openDatabase: OpenDatabase;
  /** Size limit of active snapshots (containers), e.g. "10G"; "" for none. Needs the overlay driver. */
  size?: string;
  /** `--metrics`: where to serve Prometheus metrics; null or absent for none (then the listeners are not needed). */
  metrics?: MetricsAddress | null;
  listenUnix?: ListenUnix;
  listenTcp?: ListenTcp;
}

/** The drivers that take a size limit. */
const SIZED_DRIVERS = ["overlay", "btrfs"];

/** Open the driver and the records under `root`: `<root>/<driver>/` and `<root>/<driver>.db`. */
export async function openSnapshotter(cmd: SnapshotterCommand): Promise<SnapshotService> {
  // The same path rules as a Home, before anything is created: each driver's store is a Home below it.
  checkHomePath(cmd.root, "--root");
  await fs.mkdir(cmd.root, { recursive: true, mode: 0o700 });
  const size = cmd.size ?? "";
  if (size !== "") {
    const bytes = parseSize(size);
    if (bytes < MIN_SIZE) throw new InvalidRequestError(`Invalid --size ${size}: below the minimum of ${MIN_SIZE >> 20}M`);
    if (!SIZED_DRIVERS.includes(cmd.driver) && cmd.driver !== "auto") throw new InvalidRequestError(`Invalid --size ${size}: the ${cmd.driver} driver has no size limits (overlay and btrfs have)`);
  }
  const names = cmd.driver === "auto" ? await autoCandidates(cmd.root) : [cmd.driver];
  return await firstAvailable(names, async (name) => {
    const driver = await initDriver(name, { home: path.join(cmd.root, name), options: {}, uidMaps: [], gidMaps: [], sys: cmd.sys, log: cmd.log });
    if (size !== "" && !SIZED_DRIVERS.includes(driver.name)) {
      await driver.cleanup();
      throw new InvalidRequestError(`Invalid --size ${size}: the ${driver.name} driver has no size limits (overlay and btrfs have)`);
    }
    const service = new SnapshotService(driver, new Metadata(cmd.openDatabase(path.join(cmd.root, `${name}.db`))), cmd.log, size);
    await service.recover();
    return service;
  });
}

/**
 * The drivers `--driver auto` may pick: the one whose records are already under `root` (its
 * snapshots must not vanish behind a fresh store of another driver), else every driver by priority.
 * Records of several drivers are refused: which one holds the operator's snapshots is theirs to say.
 */
async function autoCandidates(root: string): Promise<string[]> {
  const names = registeredDrivers();
  const present = (await Promise.all(names.map((n) => fs.access(path.join(root, `${n}.db`)).then(() => n, () => null)))).filter((n) => n !== null);
  if (present.length > 1) {
    throw new InvalidRequestError(`Cannot choose a driver for "${root}": it holds the records of ${present.join(" and ")}; name one with --driver`);
  }
  return present.length === 1 ? present : names;
}

/** Serve until SIGTERM/SIGINT; resolves to the exit code. */
export async function runSnapshotter(cmd: SnapshotterCommand): Promise<number> {
  const { log } = cmd;
  const service = await openSnapshotter(cmd);
  const metrics = cmd.metrics ? new Metrics() : undefined;
  metrics?.addCollector(processCollector);
  let endpoint = null;
  if (cmd.metrics && metrics) {
    if (!cmd.listenUnix || !cmd.listenTcp) throw new InvalidRequestError("Cannot serve metrics: this runtime gave no listeners");
    endpoint = await serveMetrics(cmd.metrics, metrics, { listenUnix: cmd.listenUnix, listenTcp: cmd.listenTcp }, log);
  }
  await prepareSocketPath(cmd.socket);
  const server = await listenSnapshotter(service, cmd.socket, log, metrics);
  await secureSocket(cmd.socket);
  log.info("serving snapshotter", { socket: cmd.socket, root: cmd.root, driver: service.driverName });
  await untilStopped(log);
  // Mounts stay: containerd performs them and containers run on them.
  await server.close();
  await service.close();
  await releaseSocketPath(cmd.socket);
  await endpoint?.close();
  log.info("stopped");
  return 0;
}
