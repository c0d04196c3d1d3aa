/**
 * Where `strata serve` listens: a unix socket path (what dockerd's plugin discovery uses), or
 * `tcp://HOST:PORT` for a `.spec` file naming a TCP address. The protocol has no authentication,
 * and whoever reaches it can mount and delete every layer, so TCP is refused unless HOST is a
 * loopback address.
 */
import { InvalidRequestError } from "../core/errors.ts";

/** A parsed listen address. */
export type ListenAddress = { unix: string } | { tcp: { hostname: string; port: number } };

/** Whether `hostname` (brackets stripped) is a loopback address: 127.0.0.0/8, ::1 or localhost. */
export function isLoopback(hostname: string): boolean {
  if (hostname === "localhost" || hostname === "::1") return true;
  const v4 = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(hostname);
  return v4 !== null && v4.slice(1).every((n) => Number(n) <= 255);
}

/**
 * Parse `--socket`: a path, or `tcp://HOST:PORT` with a loopback HOST.
 * @example
 * parseListenAddress("/run/docker/plugins/strata.sock"); // { unix: "/run/docker/plugins/strata.sock" }
 * parseListenAddress("tcp://127.0.0.1:7070");           // { tcp: { hostname: "127.0.0.1", port: 7070 } }
 * parseListenAddress("tcp://0.0.0.0:7070");             // throws: not loopback
 */
export function parseListenAddress(text: string): ListenAddress {
  if (!text.includes("://")) {
    if (text === "") throw new InvalidRequestError("Cannot listen on an empty socket path");
    return { unix: text };
  }
  if (text.startsWith("unix://")) return parseListenAddress(text.slice("unix://".length));
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})$/.exec(text);
  if (!m) throw new InvalidRequestError(`Cannot listen on "${text}": expected a unix socket path or tcp://HOST:PORT`);
  const hostname = m[1].replace(/^\[|\]$/g, "");
  const port = Number(m[2]);
  if (port > 65535) throw new InvalidRequestError(`Cannot listen on "${text}": port ${port} is out of range`);
  if (!isLoopback(hostname)) {
    throw new InvalidRequestError(
      `Refusing to listen on "${text}": the plugin protocol has no authentication, so TCP is served on loopback addresses only (127.0.0.1, ::1, localhost)`,
    );
  }
  return { tcp: { hostname, port } };
}
