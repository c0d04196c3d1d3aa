/** `strata serve`: the GraphDriver plugin on a socket until SIGTERM. */
import type { Logger } from "../core/log.ts";
import { Metrics, processCollector } from "../core/metrics.ts";
import { type MetricsAddress, serveMetrics } from "../core/metrics-server.ts";
import { untilStopped } from "../core/signals.ts";
import { prepareSocketPath, releaseSocketPath, secureSocket } from "../core/socket.ts";
import type { Sys } from "../sys/types.ts";
import { createApp } from "./app.ts";
import { Plugin } from "./plugin.ts";
import type { ListenAddress } from "../serve/address.ts";
import type { ListenTcp, ListenUnix, Listener } from "../serve/types.ts";

/** What `strata serve` was asked for, and the runtime's adapters. */
export interface ServeCommand {
  driver: string;
  socket: string;
  address: ListenAddress;
  stateDir: string;
  log: Logger;
  sys: Sys;
  runtime: string;
  listenUnix: ListenUnix;
  listenTcp: ListenTcp;
  /** `--metrics`: where to serve Prometheus metrics; null or absent for none. */
  metrics?: MetricsAddress | null;
}

/** Serve until SIGTERM/SIGINT; resolves to the exit code. */
export async function runServe(opts: ServeCommand): Promise<number> {
  const { log } = opts;
  const plugin = new Plugin({ sys: opts.sys, stateDir: opts.stateDir, defaultDriver: opts.driver, log });
  try {
    await plugin.restore();
  } catch (err) {
    // Serve anyway: the daemon's next Init (at its own restart) can fix what the saved state could not.
    log.error("cannot restore saved state", { stateDir: opts.stateDir, err: (err as Error).message });
  }
  const metrics = opts.metrics ? new Metrics() : undefined;
  metrics?.addCollector(processCollector);
  const fetch = createApp(plugin, log, metrics).fetch;
  const endpoint = opts.metrics && metrics ? await serveMetrics(opts.metrics, metrics, opts, log) : null;
  let listener: Listener;
  let where = opts.socket;
  if ("tcp" in opts.address) {
    const tcp = await opts.listenTcp(opts.address.tcp.hostname, opts.address.tcp.port, fetch);
    listener = tcp;
    where = `tcp://${opts.address.tcp.hostname.includes(":") ? `[${opts.address.tcp.hostname}]` : opts.address.tcp.hostname}:${tcp.port}`;
  } else {
    await prepareSocketPath(opts.address.unix);
    listener = await opts.listenUnix(opts.address.unix, fetch);
    await secureSocket(opts.address.unix);
  }
  log.info("serving", { socket: where, runtime: opts.runtime, driver: opts.driver, stateDir: opts.stateDir });
  await untilStopped(log);
  // Mounts stay: containers the daemon is running keep using them; Cleanup is the daemon's call.
  await listener.close();
  if ("unix" in opts.address) await releaseSocketPath(opts.address.unix);
  await endpoint?.close();
  log.info("stopped");
  return 0;
}
