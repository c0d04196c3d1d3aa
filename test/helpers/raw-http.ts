/** Raw HTTP/1.1 over a unix socket, byte for byte as dockerd 20.10 sends it (empty Host, no Content-Type). */
import * as net from "node:net";

/** A parsed raw response. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Send one request; `chunks` set sends the body with chunked transfer encoding. */
export function rawCall(socket: string, path: string, body: string | Buffer | null, opts: { chunks?: number } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    const data: Buffer[] = [];
    conn.on("data", (d: string | Buffer) => data.push(Buffer.from(d)));
    conn.on("error", reject);
    conn.on("end", () => {
      const all = Buffer.concat(data);
      const split = all.indexOf("\r\n\r\n");
      const head = all.subarray(0, split).toString("latin1").split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(":");
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      let rest: Buffer = all.subarray(split + 4);
      if (headers["transfer-encoding"] === "chunked") rest = _dechunk(rest);
      resolve({ status: Number(head[0].split(" ")[1]), headers, body: rest });
    });
    const payload = body === null ? Buffer.alloc(0) : Buffer.from(body);
    const base = `POST ${path} HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nConnection: close\r\n`;
    if (opts.chunks) {
      conn.write(`${base}Transfer-Encoding: chunked\r\n\r\n`);
      const size = Math.ceil(payload.length / opts.chunks);
      for (let at = 0; at < payload.length; at += size) {
        const part = payload.subarray(at, at + size);
        conn.write(`${part.length.toString(16)}\r\n`);
        conn.write(part);
        conn.write("\r\n");
      }
      conn.write("0\r\n\r\n");
    } else {
      conn.write(`${base}Content-Length: ${payload.length}\r\n\r\n`);
      conn.write(payload);
    }
  });
}

function _dechunk(buf: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf("\r\n", at);
    const size = parseInt(buf.subarray(at, eol).toString("latin1"), 16);
    if (!size) return Buffer.concat(out);
    out.push(buf.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}
