/**
 * strata as a library: serve your own storage driver over the GraphDriver protocol, the TypeScript
 * counterpart of go-plugins-helpers' graphdriver package.
 *
 * @example
 * import { serve, type Driver } from "./src/mod.ts";
 * const driver: Driver = { name: "mine", ... };
 * const server = await serve(driver, { socket: "/run/docker/plugins/mine.sock" });
 * // later: await server.close();
 */
import { createApp, fixedSource, type DriverSource } from "./graphdriver/app.ts";
import type { Driver } from "./core/driver.ts";
import { silentLogger, type Logger } from "./core/log.ts";
import { prepareSocketPath, releaseSocketPath, secureSocket } from "./core/socket.ts";
import type { ListenUnix, Listener } from "./serve/types.ts";

export { createApp, fixedSource, type DriverSource } from "./graphdriver/app.ts";
export type { Change, CreateOpts, DiffDriver, Driver, IdMap, ProtoDriver, StatusPairs } from "./core/driver.ts";
export { ChangeKind } from "./core/driver.ts";
export * from "./core/errors.ts";
export { withNaiveDiff } from "./core/naive-diff.ts";
export { createLogger, type Logger } from "./core/log.ts";

/** Options of `serve`. */
export interface ServeOptions {
  /** Unix socket path, e.g. /run/docker/plugins/NAME.sock for `--storage-driver NAME`. */
  socket: string;
  log?: Logger;
  /** The runtime's server; by default Bun's or Deno's, whichever is running. */
  listenUnix?: ListenUnix;
}

/** Serve `driver` (or a DriverSource that handles Init itself) on a unix socket. */
export async function serve(driver: Driver | DriverSource, opts: ServeOptions): Promise<Listener> {
  const source = "current" in driver ? driver : fixedSource(driver);
  // The one place runtime detection is allowed: a library caller has no entry point of ours.
  // A computed specifier keeps each runtime from loading (and type-checking) the other's adapter.
  const adapter = "Bun" in globalThis ? "./serve/bun.ts" : "./serve/deno.ts";
  const listenUnix: ListenUnix = opts.listenUnix ?? (await import(adapter)).listenUnix;
  await prepareSocketPath(opts.socket);
  const listener = await listenUnix(opts.socket, createApp(source, opts.log ?? silentLogger).fetch);
  await secureSocket(opts.socket);
  return {
    close: async () => {
      await listener.close();
      await releaseSocketPath(opts.socket);
    },
  };
}
