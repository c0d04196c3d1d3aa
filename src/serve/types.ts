/** What a runtime adapter offers the runtime-neutral core: an HTTP server on a unix socket or a TCP port. */

/** A request handler, as Hono's `app.fetch`. */
export type FetchHandler = (req: Request) => Response | Promise<Response>;

/** A listening server. */
export interface Listener {
  /** Stop accepting connections and wait for in-flight calls to finish. */
  close(): Promise<void>;
}

/** Serve `fetch` on the unix socket at `path` (which must not exist). */
export type ListenUnix = (path: string, fetch: FetchHandler) => Promise<Listener>;

/** Serve `fetch` on TCP `hostname:port` (port 0: any free one); the caller has checked the address. */
export type ListenTcp = (hostname: string, port: number, fetch: FetchHandler) => Promise<Listener & { port: number }>;
