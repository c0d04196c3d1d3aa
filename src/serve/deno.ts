/** The Deno adapter: `Deno.serve` on a unix socket. */
import * as fs from "node:fs/promises";
import type { FetchHandler, ListenUnix, Listener } from "./types.ts";

/** Serve on a unix socket with Deno. */
export const listenUnix: ListenUnix = async (path: string, fetch: FetchHandler): Promise<Listener> => {
  const inFlight = new Set<Promise<Response>>();
  const server = Deno.serve({ path, onListen() {} }, (req) => {
    const res = Promise.resolve(fetch(req));
    inFlight.add(res);
    res.then(() => inFlight.delete(res), () => inFlight.delete(res));
    return res;
  });
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
