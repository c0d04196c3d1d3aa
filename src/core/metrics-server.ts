/**
 * `--metrics`: GET /metrics in Prometheus text format on a unix socket (`unix:/run/strata/metrics.sock`)
 * or a loopback TCP port (`127.0.0.1:9090`). Metrics name every layer that has a size limit and
 * how busy the store is, so, as with the plugin socket, TCP is served on loopback addresses only.
 */
import { InvalidRequestError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { METRICS_CONTENT_TYPE, type Metrics } from "./metrics.ts";
import { prepareSocketPath, releaseSocketPath, secureSocket } from "./socket.ts";
import { isLoopback } from "../serve/address.ts";
import type { ListenTcp, ListenUnix } from "../serve/types.ts";

/** Where metrics are served. */
export type MetricsAddress = { unix: string } | { tcp: { hostname: string; port: number } };

/** The path metrics are served on. */
export const METRICS_PATH = "/metrics";

/**
 * Parse `--metrics`: `unix:/PATH` (absolute), or `HOST:PORT` with a loopback HOST (`[::1]:PORT` for IPv6).
 * @example
 * parseMetricsAddress("unix:/run/strata/metrics.sock"); // { unix: "/run/strata/metrics.sock" }
 * parseMetricsAddress("127.0.0.1:9323");               // { tcp: { hostname: "127.0.0.1", port: 9323 } }
 * parseMetricsAddress("0.0.0.0:9323");                 // throws: not loopback
 */
export function parseMetricsAddress(text: string): MetricsAddress {
  if (text.startsWith("unix:")) {
    const p = text.slice("unix:".length).replace(/^\/\/(?=\/)/, "");
    if (!p.startsWith("/")) throw new InvalidRequestError(`Invalid --metrics "${text}": a unix socket must be an absolute path (unix:/run/strata/metrics.sock)`);
    return { unix: p };
  }
  const m = /^(?:tcp:\/\/)?(\[[^\]]+\]|[^:/\[\]]+):(\d{1,5})$/.exec(text);
  if (!m) throw new InvalidRequestError(`Invalid --metrics "${text}": expected unix:/PATH or HOST:PORT`);
  const hostname = m[1].replace(/^\[|\]$/g, "");
  const port = Number(m[2]);
  if (port > 65535) throw new InvalidRequestError(`Invalid --metrics "${text}": port ${port} is out of range`);
  if (!isLoopback(hostname)) {
    throw new InvalidRequestError(`Refusing to serve metrics on "${text}": TCP is served on loopback addresses only (127.0.0.1, ::1, localhost)`);
  }
  return { tcp: { hostname, port } };
}

/** A metrics endpoint being served. */
export interface MetricsEndpoint {
  /** `unix:/path` or `HOST:PORT` (the real port when 0 was asked for). */
  where: string;
  close(): Promise<void>;
}

/**
 * The fetch handler: GET (or HEAD) /metrics renders `metrics`; anything else is 404 or 405.
 * @example
 * const res = await metricsHandler(metrics)(new Request("http://x/metrics"));
 */
export function metricsHandler(metrics: Metrics): (req: Request) => Promise<Response> {
  return async (req) => {
    // Bun hands unix-socket requests over with a bare path as their URL.
    const url = new URL(req.url, "http://metrics");
    if (url.pathname !== METRICS_PATH) return new Response("Not found: metrics are on /metrics\n", { status: 404 });
    if (req.method !== "GET" && req.method !== "HEAD") return new Response("Method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    return new Response(req.method === "HEAD" ? null : await metrics.render(), { headers: { "content-type": METRICS_CONTENT_TYPE } });
  };
}

/** Serve `metrics` at `address` with the runtime's listeners until `close`. */
export async function serveMetrics(
  address: MetricsAddress, metrics: Metrics, listen: { listenUnix: ListenUnix; listenTcp: ListenTcp }, log: Logger,
): Promise<MetricsEndpoint> {
  const fetch = metricsHandler(metrics);
  if ("tcp" in address) {
    const { hostname, port } = address.tcp;
    const server = await listen.listenTcp(hostname, port, fetch);
    const where = `${hostname.includes(":") ? `[${hostname}]` : hostname}:${server.port}`;
    log.info("serving metrics", { metrics: where });
    return { where, close: () => server.close() };
  }
  await prepareSocketPath(address.unix);
  const server = await listen.listenUnix(address.unix, fetch);
  await secureSocket(address.unix);
  log.info("serving metrics", { metrics: `unix:${address.unix}` });
  return {
    where: `unix:${address.unix}`,
    close: async () => {
      await server.close();
      await releaseSocketPath(address.unix);
    },
  };
}
