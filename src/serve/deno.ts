/** The Deno adapter: `Deno.serve` on a unix socket. */
import * as fs from "node:fs/promises";
import type { FetchHandler, ListenTcp, ListenUnix, Listener } from "./types.ts";

/** Serve on a unix socket with Deno. */
export const listenUnix: ListenUnix = async (path: string, fetch: FetchHandler): Promise<Listener> => {
  const { server, inFlight } = _serve({ path, onListen() {} }, fetch);
  return {
    close: async () => {
      // shutdown() closes the bodies of requests still being read ("Cannot read request body as
      // underlying resource unavailable"), which would fail an ApplyDiff mid-layer: let the handlers
      // finish first. Unlinking the path keeps new clients out meanwhile; calls on connections the
      // daemon already holds open are still served, and waited for.
      await fs.rm(path, { force: true });
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      await server.shutdown();
    },
  };
};

/** Serve on a TCP port with Deno (loopback only: `address.ts` checks before this is called). */
export const listenTcp: ListenTcp = async (hostname: string, port: number, fetch: FetchHandler) => {
  const { server, inFlight } = _serve({ hostname, port, onListen() {} }, fetch);
  return {
    port: server.addr.port,
    close: async () => {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      await server.shutdown();
    },
  };
};

/** Deno.serve, keeping track of the calls in flight so a close can let them finish. */
function _serve(
  options: Deno.ServeUnixOptions | Deno.ServeTcpOptions,
  fetch: FetchHandler,
): { server: Deno.HttpServer<Deno.NetAddr>; inFlight: Set<Promise<Response>> } {
  const inFlight = new Set<Promise<Response>>();
  const server = Deno.serve(options as Deno.ServeTcpOptions, (req) => {
    const res = Promise.resolve(fetch(req));
    inFlight.add(res);
    res.then(() => inFlight.delete(res), () => inFlight.delete(res));
    return res;
  });
  return { server, inFlight };
}
