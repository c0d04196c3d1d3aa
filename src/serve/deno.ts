/** The Deno adapter: `Deno.serve` on a unix socket. */
import type { FetchHandler, ListenUnix, Listener } from "./types.ts";

/** Serve on a unix socket with Deno. */
export const listenUnix: ListenUnix = async (path: string, fetch: FetchHandler): Promise<Listener> => {
  const server = Deno.serve({ path, onListen() {} }, (req) => fetch(req));
  return { close: () => server.shutdown() };
};
