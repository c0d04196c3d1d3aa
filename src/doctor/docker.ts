/**
 * The Docker daemon on a socket, as `strata doctor` needs it: its version, and which storage path
 * it would take strata by (graphdriver plugins up to 27, the containerd snapshotter from 28 or with
 * the containerd image store on). A raw HTTP/1.1 GET over node:net, the same on Bun and Deno.
 */
import * as net from "node:net";

/** What the daemon said about itself. */
export interface DaemonFacts {
  version: string;
  apiVersion: string;
  /** `docker info`'s storage driver. */
  driver: string;
  /** Whether it keeps images in containerd (`driver-type io.containerd.snapshotter.v1`). */
  containerdStore: boolean;
  experimental: boolean;
}

/** GET `path` on the unix socket; resolves to status and body, rejects when nothing answers. */
export function unixGet(socket: string, path: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.on("connect", () => conn.write(`GET ${path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n`));
    conn.on("data", (d: Buffer) => chunks.push(d));
    conn.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    conn.on("end", () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks);
      const split = raw.indexOf("\r\n\r\n");
      if (split < 0) return reject(new Error("the connection closed without an HTTP answer"));
      const head = raw.subarray(0, split).toString("latin1").split("\r\n");
      let body: Buffer = raw.subarray(split + 4);
      if (head.some((h) => /^transfer-encoding:\s*chunked/i.test(h))) body = _dechunk(body);
      resolve({ status: Number(head[0]?.split(" ")[1]), body: body.toString("utf8") });
    });
  });
}

function _dechunk(buf: Buffer): Buffer {
  const out: Buffer[] = [];
  for (let at = 0; ; ) {
    const eol = buf.indexOf("\r\n", at);
    if (eol < 0) return Buffer.concat(out);
    const size = parseInt(buf.subarray(at, eol).toString("latin1"), 16);
    if (!size) return Buffer.concat(out);
    out.push(buf.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/** Ask the daemon on `socket` for /version and /info. */
export async function queryDaemon(socket: string): Promise<DaemonFacts> {
  const version = await unixGet(socket, "/version");
  if (version.status !== 200) throw new Error(`GET /version answered HTTP ${version.status}`);
  const v = JSON.parse(version.body) as { Version?: string; ApiVersion?: string; Experimental?: boolean };
  const info = await unixGet(socket, "/info").then((r) => (r.status === 200 ? JSON.parse(r.body) : {}), () => ({}));
  const status = (info.DriverStatus ?? []) as Array<[string, string]>;
  return {
    version: String(v.Version ?? "?"),
    apiVersion: String(v.ApiVersion ?? "?"),
    driver: String(info.Driver ?? "?"),
    containerdStore: status.some(([k, val]) => k === "driver-type" && val === "io.containerd.snapshotter.v1"),
    experimental: Boolean(info.ExperimentalBuild ?? v.Experimental ?? false),
  };
}

/**
 * Which strata front end a daemon of `version` needs, as the README's table says.
 * @example
 * frontEndFor("20.10.24", false); // { plugins: true, text: "loads graphdriver plugins with --experimental: strata serve" }
 */
export function frontEndFor(version: string, containerdStore: boolean): { plugins: boolean; text: string } {
  const major = Number(/^(\d+)\./.exec(version)?.[1] ?? NaN);
  if (containerdStore) return { plugins: false, text: "keeps images in containerd (containerd image store): strata snapshotter as a proxy snapshotter" };
  if (Number.isNaN(major)) return { plugins: false, text: "version not understood" };
  if (major >= 28) return { plugins: false, text: "loads no graphdriver plugins (removed in 28): strata snapshotter with the containerd image store" };
  if (major === 27) return { plugins: true, text: "loads graphdriver plugins only with --experimental and DOCKERD_DEPRECATED_GRAPHDRIVER_PLUGINS=1: strata serve, or strata snapshotter" };
  return { plugins: true, text: "loads graphdriver plugins with --experimental: strata serve" };
}
