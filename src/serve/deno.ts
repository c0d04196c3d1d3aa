/** The Deno adapter: `Deno.serve` on a unix socket. */
import * as fs from "node:fs/promises";
import type { FetchHandler, ListenTcp, ListenUnix, Listener } from "./types.ts";

/** Serve on a unix socket with Deno. */
export const listenUnix: ListenUnix = async (path: string, fetch: FetchHandler): Promise<Listener> => {
  const server = _serve({ path, onListen() {} }, fetch);
  return {
    close: async () => {
      // Unlinking the path keeps new clients out while the calls in flight finish; calls on
      // connections the daemon already holds open are still served, and waited for.
      await fs.rm(path, { force: true });
      await server.close();
    },
  };
};

/** Serve on a TCP port with Deno (loopback only: `address.ts` checks before this is called). */
export const listenTcp: ListenTcp = async (hostname: string, port: number, fetch: FetchHandler) => {
  const server = _serve({ hostname, port, onListen() {} }, fetch);
  return { port: server.port, close: () => server.close() };
};

/**
 * Deno.serve, with a close that lets the calls in flight finish first: shutdown() closes the
 * bodies of requests still being read ("Cannot read request body as underlying resource
 * unavailable"), which would fail an ApplyDiff mid-layer.
 */
function _serve(options: Deno.ServeUnixOptions | Deno.ServeTcpOptions, fetch: FetchHandler): { port: number; close(): Promise<void> } {
  const inFlight = new Set<Promise<Response>>();
  const server = Deno.serve(options as Deno.ServeTcpOptions, (req) => {
    const res = Promise.resolve(fetch(req));
    inFlight.add(res);
    res.then(() => inFlight.delete(res), () => inFlight.delete(res));
    return res;
  });
  return {
    port: server.addr.port,
    close: async () => {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      await server.shutdown();
    },
  };
}
