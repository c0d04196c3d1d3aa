/** The Bun adapter: `Bun.serve` on a unix socket with the limits the protocol needs. */
import type { FetchHandler, ListenTcp, ListenUnix, Listener } from "./types.ts";

/** Serve on a unix socket with Bun. */
export const listenUnix: ListenUnix = async (path: string, fetch: FetchHandler): Promise<Listener> => {
  const options = {
    unix: path,
    // ApplyDiff bodies are whole layers (default cap 128 MiB) and calls may take minutes (default idle cut 10 s).
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    idleTimeout: 0,
    fetch: (req: Request) => fetch(_absolute(req)),
  };
  // bun-types leave idleTimeout out of the unix-socket variant; Bun accepts it there all the same.
  const server = Bun.serve(options as unknown as Parameters<typeof Bun.serve>[0]);
  return { close: () => server.stop(false) };
};

/** Serve on a TCP port with Bun (loopback only: `address.ts` checks before this is called). */
export const listenTcp: ListenTcp = async (hostname: string, port: number, fetch: FetchHandler) => {
  const server = Bun.serve({
    hostname,
    port,
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    idleTimeout: 0,
    fetch: (req: Request) => fetch(req),
  });
  return { port: server.port ?? port, close: () => server.stop(false) };
};

// dockerd 20.10 sends an empty Host, so Bun's req.url is a bare path, which URL parsing (and Hono's
// router) rejects: give it an absolute URL, keeping the body stream.
function _absolute(req: Request): Request {
  if (!req.url.startsWith("/")) return req;
  // Hand over the body stream itself: `new Request(url, req)` makes Bun read the whole upload (a
  // layer, gigabytes) into memory at socket speed, with no backpressure.
  const init = { method: req.method, headers: req.headers, body: req.body, duplex: "half" };
  return new Request(`http://plugin${req.url}`, init as RequestInit);
}
