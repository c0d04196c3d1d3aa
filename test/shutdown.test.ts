import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { file, makeTar } from "./helpers/layer-tar.ts";
import { rawCall } from "./helpers/raw-http.ts";
import { STRATA_COMMANDS } from "./helpers/strata-commands.ts";


const LAYER = "a".repeat(64);

/**
 * An ApplyDiff whose body arrives in two halves, as a slow daemon would send it: chunked, the head
 * and first half now, the rest when `finish()` is called. Resolves `response` with the raw answer.
 */
function slowApplyDiff(socket: string, body: Uint8Array) {
  const conn = net.connect(socket);
  const data: Buffer[] = [];
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    conn.on("data", (d: string | Buffer) => data.push(Buffer.from(d)));
    conn.on("error", reject);
    conn.on("end", () => {
      const all = Buffer.concat(data).toString("latin1");
      const split = all.indexOf("\r\n\r\n");
      const status = Number(all.slice(0, split).split(" ")[1]);
      const head = all.slice(0, split).toLowerCase();
      let rest = all.slice(split + 4);
      if (head.includes("transfer-encoding: chunked")) rest = rest.replace(/^[0-9a-f]+\r\n/, "").replace(/\r\n0\r\n\r\n$/, "");
      resolve({ status, body: rest });
    });
  });
  const half = Math.floor(body.length / 2);
  const chunk = (part: Uint8Array) => {
    conn.write(`${part.length.toString(16)}\r\n`);
    conn.write(part);
    conn.write("\r\n");
  };
  const started = new Promise<void>((resolve) =>
    conn.once("connect", () => {
      conn.write(
        `POST /GraphDriver.ApplyDiff?id=${LAYER}&parent= HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\n` +
          `Accept: application/vnd.docker.plugins.v1.2+json\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n`,
      );
      chunk(body.subarray(0, half));
      resolve();
    }),
  );
  const finish = () => {
    chunk(body.subarray(half));
    conn.write("0\r\n\r\n");
  };
  return { started, finish, response };
}

const json = (s: string) => JSON.stringify(s === "" ? {} : JSON.parse(s));

for (const { name, argv: cmd, skip } of STRATA_COMMANDS) {
  describe(`SIGTERM (${name})`, () => {
    test.skipIf(!!skip)(`lets an in-flight ApplyDiff finish, then exits 0 and removes its socket${skip ? ` (skipped: ${skip})` : ""}`, async () => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-shutdown-"));
      const socket = path.join(root, "s.sock");
      const proc = Bun.spawn([...cmd, "serve", "--driver", "vfs", "--socket", socket, "--state-dir", path.join(root, "state")], { stderr: "pipe" });
      try {
        for (let i = 0; i < 600 && !fs.existsSync(socket); i++) await Bun.sleep(50);
        const init = await rawCall(socket, "/GraphDriver.Init", JSON.stringify({ Home: path.join(root, "home"), Opts: null, UIDMaps: null, GIDMaps: null }) + "\n");
        expect(json(init.body.toString())).toBe(json('{"Err":""}'));
        expect((await rawCall(socket, "/GraphDriver.Create", JSON.stringify({ ID: LAYER }) + "\n")).status).toBe(200);

        // Big enough that the first half is a partial entry: the driver is mid-apply when SIGTERM lands.
        const tar = await makeTar([file("hello.txt", "hello\n"), file("big.bin", "x".repeat(256 * 1024))]);
        const call = slowApplyDiff(socket, tar);
        await call.started;
        await Bun.sleep(300);
        proc.kill("SIGTERM");
        await Bun.sleep(500);
        expect(proc.exitCode).toBeNull(); // still serving the call it has
        call.finish();

        const res = await call.response;
        expect(`${res.status} ${res.body}`).toStartWith("200 ");
        expect(JSON.parse(res.body)).toMatchObject({ Size: expect.any(Number), Err: "" });
        expect(fs.readFileSync(path.join(root, "home", "dir", LAYER, "hello.txt"), "utf8")).toBe("hello\n");
        expect(await proc.exited).toBe(0);
        expect(fs.existsSync(socket)).toBe(false);
        const log = await new Response(proc.stderr).text();
        expect(log).toMatch(/info stopping signal=SIGTERM/);
        expect(log).toMatch(/info call method=GraphDriver.ApplyDiff id=a{64} ms=\d+ status=200/);
        expect(log.indexOf("info stopped")).toBeGreaterThan(log.indexOf("method=GraphDriver.ApplyDiff"));
      } finally {
        proc.kill("SIGKILL");
        fs.rmSync(root, { recursive: true, force: true });
      }
    }, 60_000);
  });
}
