import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { serve } from "../src/mod.ts";
import { MemoryDriver } from "./helpers/memory-driver.ts";
import { rawCall } from "./helpers/raw-http.ts";

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-serve-"));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

describe("serve (library)", () => {
  test("serves a user's driver on a unix socket to daemon-shaped requests", async () => {
    const socket = path.join(root, "plugins", "mine.sock");
    const driver = new MemoryDriver();
    const server = await serve(driver, { socket });
    try {
      expect((fs.statSync(socket).mode & 0o777).toString(8)).toBe("660");
      const activate = await rawCall(socket, "/Plugin.Activate", null);
      expect(JSON.parse(activate.body.toString())).toEqual({ Implements: ["GraphDriver"] });
      const created = await rawCall(socket, "/GraphDriver.Create", '{"ID":"l1"}\n');
      expect([created.status, JSON.parse(created.body.toString())]).toEqual([200, { Err: "" }]);
      const tar = Buffer.alloc(200_000, 1);
      const applied = await rawCall(socket, "/GraphDriver.ApplyDiff?id=l1&parent=", tar, { chunks: 8 });
      expect(JSON.parse(applied.body.toString())).toEqual({ Size: tar.length, Err: "" });
      const empty = await rawCall(socket, "/GraphDriver.Remove", null);
      expect(empty.status).toBe(400);
      expect(driver.layers.has("l1")).toBe(true);
    } finally {
      await server.close();
    }
    expect(fs.existsSync(socket)).toBe(false);
  });

  test("streams an upload with backpressure: a slow reader does not make the server buffer the body", async () => {
    const socket = path.join(root, "bp.sock");
    const size = 768 * 1024 * 1024;
    let peak = 0;
    const { listenUnix } = await import("../src/serve/bun.ts");
    const listener = await listenUnix(socket, async (req) => {
      let n = 0;
      for await (const chunk of req.body!) {
        n += chunk.byteLength;
        // A disk slower than the socket: every 16 MiB a pause, long enough for the sender to run far ahead if it could.
        if (n % (16 * 1024 * 1024) < chunk.byteLength) {
          await Bun.sleep(30);
          peak = Math.max(peak, process.memoryUsage().rss);
        }
      }
      return Response.json({ n });
    });
    try {
      const before = process.memoryUsage().rss;
      const conn = net.connect(socket);
      await new Promise((r) => conn.once("connect", r));
      const reply = new Promise<string>((resolve) => {
        let text = "";
        conn.on("data", (d) => (text += d.toString()));
        conn.on("end", () => resolve(text));
      });
      // dockerd's empty Host: the adapter must rebuild the URL without copying the body.
      conn.write(`POST /GraphDriver.ApplyDiff?id=x HTTP/1.1\r\nHost: \r\nContent-Length: ${size}\r\nConnection: close\r\n\r\n`);
      const block = Buffer.alloc(1024 * 1024);
      for (let sent = 0; sent < size; sent += block.length) {
        if (!conn.write(block)) await new Promise((r) => conn.once("drain", r));
      }
      expect(await reply).toContain(`{"n":${size}}`);
      expect(peak - before).toBeLessThan(256 * 1024 * 1024);
    } finally {
      await listener.close();
    }
  }, 60_000);

  test("serves concurrent calls: a Diff in flight does not block another connection", async () => {
    const socket = path.join(root, "p.sock");
    const driver = new MemoryDriver();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    driver.diff = async () =>
      new ReadableStream<Uint8Array>({
        async pull(c) {
          await gate;
          c.enqueue(new Uint8Array(10));
          c.close();
        },
      });
    const server = await serve(driver, { socket });
    try {
      await rawCall(socket, "/GraphDriver.Create", '{"ID":"a"}\n');
      const diff = rawCall(socket, "/GraphDriver.Diff", '{"ID":"a","Parent":""}\n');
      const create = await rawCall(socket, "/GraphDriver.Create", '{"ID":"b","Parent":"a"}\n');
      expect(create.status).toBe(200);
      release();
      expect((await diff).body.length).toBe(10);
    } finally {
      await server.close();
    }
  });

  test("replaces a stale socket file but refuses one that is being served", async () => {
    const socket = path.join(root, "stale.sock");
    const stale = net.createServer().listen(socket);
    await new Promise((r) => stale.once("listening", r));
    await expect(serve(new MemoryDriver(), { socket })).rejects.toThrow(`Cannot listen on "${socket}": another process is serving it`);
    // Closing a node server unlinks its socket; a killed process would not: leave a dead socket file behind.
    await new Promise((r) => stale.close(r));
    const dead = Bun.spawnSync(["python3", "-c", `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(socket)})`]);
    expect(dead.exitCode).toBe(0);
    const server = await serve(new MemoryDriver(), { socket });
    const res = await rawCall(socket, "/Plugin.Activate", null);
    expect(res.status).toBe(200);
    await server.close();
  });
});
