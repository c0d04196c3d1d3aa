import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createLogger } from "../src/core/log.ts";
import { rawCall } from "./helpers/raw-http.ts";

const BUN = path.resolve("node_modules/.bin/bun");

describe("createLogger", () => {
  test("json lines carry the same fields as text lines", () => {
    const text: string[] = [];
    const json: string[] = [];
    const fields = { method: "GraphDriver.Create", id: "a b", ms: 3, status: 200, err: "x=\"y\"" };
    createLogger("info", (l) => text.push(l)).warn("call failed", fields);
    createLogger("info", (l) => json.push(l), "json").warn("call failed", fields);
    expect(text[0]).toMatch(/^\d{4}-\d\d-\d\dT\S+Z warn call failed method=GraphDriver.Create id="a b" ms=3 status=200 err="x=\\"y\\""$/);
    const obj = JSON.parse(json[0]);
    expect(Object.keys(obj)).toEqual(["time", "level", "msg", "method", "id", "ms", "status", "err"]);
    expect(obj).toMatchObject({ level: "warn", msg: "call failed", ...fields });
    expect(obj.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  test("json keeps the level filter, renames fields that would shadow time/level/msg, and survives bigints", () => {
    const lines: string[] = [];
    const log = createLogger("warn", (l) => lines.push(l), "json");
    log.info("dropped");
    log.error("boom", { level: "mine", size: 10n });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ level: "error", msg: "boom", "field.level": "mine", size: "10" });
  });
});

describe("strata serve --log-format json", () => {
  test("writes one JSON object per line with the call's fields", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-logfmt-"));
    const socket = path.join(root, "s.sock");
    const proc = Bun.spawn([BUN, "src/main.bun.ts", "serve", "--driver", "vfs", "--socket", socket, "--state-dir", path.join(root, "state"), "--log-format", "json"], { stderr: "pipe" });
    try {
      for (let i = 0; i < 200 && !fs.existsSync(socket); i++) await Bun.sleep(25);
      await rawCall(socket, "/GraphDriver.Init", JSON.stringify({ Home: path.join(root, "home"), Opts: null, UIDMaps: null, GIDMaps: null }) + "\n");
      await rawCall(socket, "/GraphDriver.Get", JSON.stringify({ ID: "missing", MountLabel: "" }) + "\n");
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      const lines = (await new Response(proc.stderr).text()).trim().split("\n").map((l) => JSON.parse(l));
      expect(lines.find((l) => l.msg === "serving")).toMatchObject({ level: "info", driver: "vfs", runtime: "bun" });
      expect(lines.find((l) => l.msg === "call" && l.method === "GraphDriver.Init")).toMatchObject({ level: "info", id: "", status: 200 });
      expect(lines.find((l) => l.msg === "call failed")).toMatchObject({ level: "warn", method: "GraphDriver.Get", id: "missing", status: 404, err: expect.stringContaining("does not exist") });
      expect(lines.at(-1)).toMatchObject({ msg: "stopped" });
    } finally {
      proc.kill("SIGKILL");
      fs.rmSync(root, { recursive: true, force: true });
    }
  }, 20_000);
});
