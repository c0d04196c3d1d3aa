/**
 * `strata status`: ask a running plugin for `/GraphDriver.Status` over its unix socket and print the
 * pairs. A raw HTTP/1.1 exchange over node:net, so it is the same code on Bun, in the compiled binary
 * and on Deno (whose fetch has no unix-socket option).
 */
import * as net from "node:net";

/** One `[key, value]` pair of the Status answer. */
export type StatusPair = [string, string];

/** The plugin could not be reached, or answered with an error. */
export class StatusError extends Error {
  override name = "StatusError";
}

/**
 * The Status pairs of the plugin serving on `socket`.
 *
 * @example
 * ```ts
 * const pairs = await queryStatus("/run/docker/plugins/strata.sock");
 * process.stdout.write(formatStatus(pairs));
 * ```
 */
export async function queryStatus(socket: string, timeoutMs = 10_000): Promise<StatusPair[]> {
  const res = await _post(socket, "/GraphDriver.Status", "{}\n", timeoutMs);
  let body: { Status?: unknown; Err?: unknown };
  try {
    body = JSON.parse(res.body);
  } catch {
    throw new StatusError(`The plugin on "${socket}" answered HTTP ${res.status} with a body that is not JSON`);
  }
  if (res.status !== 200 || (typeof body.Err === "string" && body.Err !== "")) {
    throw new StatusError(`The plugin on "${socket}" answered HTTP ${res.status}: ${typeof body.Err === "string" ? body.Err : res.body.trim()}`);
  }
  if (!Array.isArray(body.Status)) throw new StatusError(`The plugin on "${socket}" answered without a Status list`);
  return body.Status.map((p) => (Array.isArray(p) ? [String(p[0] ?? ""), String(p[1] ?? "")] : [String(p), ""]));
}

/** Pairs as `key: value` lines, the values aligned in one column. */
export function formatStatus(pairs: StatusPair[]): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length + 1));
  return pairs.map(([k, v]) => `${(k + ":").padEnd(width)} ${v}\n`).join("");
}

interface _Response {
  status: number;
  body: string;
}

// Headers as dockerd sends them; Connection: close makes the end of the stream the end of the body.
function _post(socket: string, path: string, body: string, timeoutMs: number): Promise<_Response> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new StatusError(`The plugin on "${socket}" did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.on("connect", () => {
      // One write: Bun answers Status before reading the body and closes; a body sent in a second write
      // would then meet a closed socket (EPIPE) and the unread bytes would reset the answer away.
      const payload = Buffer.from(body);
      const head = `POST ${path} HTTP/1.1\r\nHost: plugin\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n` +
        `Connection: close\r\nContent-Length: ${payload.length}\r\n\r\n`;
      conn.write(Buffer.concat([Buffer.from(head, "latin1"), payload]));
    });
    conn.on("data", (d: Buffer) => chunks.push(d));
    conn.on("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = err.code === "ENOENT" || err.code === "ECONNREFUSED" ? `nothing is listening (${err.code})` : err.message;
      reject(new StatusError(`Cannot reach strata on "${socket}": ${why}`));
    });
    conn.on("end", () => {
      clearTimeout(timer);
      try {
        resolve(_parse(Buffer.concat(chunks)));
      } catch (err) {
        reject(err);
      }
    });
  });
}

function _parse(raw: Buffer): _Response {
  const split = raw.indexOf("\r\n\r\n");
  if (split < 0) throw new StatusError("The plugin closed the connection without a complete HTTP answer");
  const head = raw.subarray(0, split).toString("latin1").split("\r\n");
  const status = Number(head[0]?.split(" ")[1]);
  const chunked = head.some((h) => /^transfer-encoding:\s*chunked/i.test(h));
  let body = raw.subarray(split + 4);
  if (chunked) body = _dechunk(body);
  return { status, body: body.toString("utf8") };
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
