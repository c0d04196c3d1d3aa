/** What a runtime adapter offers the runtime-neutral core: an HTTP server on a unix socket. */

/** A request handler, as Hono's `app.fetch`. */
export type FetchHandler = (req: Request) => Response | Promise<Response>;

/** A listening server. */
export interface Listener {
  /** Stop accepting connections and wait for in-flight calls to finish. */
  close(): Promise<void>;
}

/** Serve `fetch` on the unix socket at `path` (which must not exist). */
export type ListenUnix = (path: string, fetch: FetchHandler) => Promise<Listener>;
