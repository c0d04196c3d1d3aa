import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { rawCall } from "./helpers/raw-http.ts";
import { STRATA_COMMANDS } from "./helpers/strata-commands.ts";


function run(argv: string[]) {
  const p = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

for (const { name, argv: cmd, skip, runtime } of STRATA_COMMANDS) {
  describe(`strata CLI (${name})`, () => {
    test.skipIf(!!skip)(`prints usage for --help${skip ? ` (skipped: ${skip})` : ""}`, () => {
      const r = run([...cmd, "--help"]);
      expect(r.code).toBe(0);
      expect(r.out).toContain("strata serve [--driver auto|overlay|erofs|vfs]");
    });
    test.skipIf(!!skip)("reports version, commit and runtime", () => {
      const r = run([...cmd, "version"]);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(new RegExp(`^strata \\d+\\.\\d+\\.\\d+ \\(commit \\S+, runtime ${runtime}\\)\n$`));
    });
    test.skipIf(!!skip)("exits 2 with usage on a bad flag", () => {
      const r = run([...cmd, "serve", "--bogus"]);
      expect(r.code).toBe(2);
      expect(r.err).toContain("Unknown option '--bogus'");
      expect(r.err).toContain("Usage:");
    });
    test.skipIf(!!skip)("refuses to listen on TCP beyond loopback: the protocol has no authentication", () => {
      for (const address of ["tcp://0.0.0.0:7070", "tcp://10.1.2.3:7070", "tcp://[::]:7070", "tcp://example.com:80"]) {
        const r = run([...cmd, "serve", "--socket", address, "--state-dir", "/nonexistent/never-made"]);
        expect(r.code).toBe(2);
        expect(r.err).toContain(`Refusing to listen on "${address}"`);
      }
      const r = run([...cmd, "serve", "--socket", "tcp://127.0.0.1:99999"]);
      expect(r.code).toBe(2);
      expect(r.err).toContain("port 99999 is out of range");
    });
    test.skipIf(!!skip)("serves the protocol on a loopback TCP port", async () => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-cli-tcp-"));
      const proc = Bun.spawn([...cmd, "serve", "--driver", "vfs", "--socket", "tcp://127.0.0.1:0", "--state-dir", path.join(root, "state")], { stderr: "pipe" });
      try {
        // Port 0 lets the kernel pick; the "serving" log line says which.
        const reader = proc.stderr.getReader();
        let log = "";
        let port = 0;
        while (port === 0) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`strata exited before serving:\n${log}`);
          log += new TextDecoder().decode(value);
          port = Number(/serving socket=tcp:\/\/127\.0\.0\.1:(\d+)/.exec(log)?.[1] ?? 0);
        }
        const res = await fetch(`http://127.0.0.1:${port}/Plugin.Activate`, { method: "POST" });
        expect(await res.json()).toEqual({ Implements: ["GraphDriver"] });
        const init = await fetch(`http://127.0.0.1:${port}/GraphDriver.Init`, {
          method: "POST",
          body: JSON.stringify({ Home: path.join(root, "home"), Opts: null, UIDMaps: null, GIDMaps: null }),
        });
        expect(await init.json()).toEqual({ Err: "" });
        reader.releaseLock();
        proc.kill("SIGTERM");
        expect(await proc.exited).toBe(0);
      } finally {
        proc.kill("SIGKILL");
        fs.rmSync(root, { recursive: true, force: true });
      }
    }, 30_000);
    test.skipIf(!!skip)("serves, logs one line per call, and stops cleanly on SIGTERM", async () => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-cli-"));
      const socket = path.join(root, "s.sock");
      const proc = Bun.spawn([...cmd, "serve", "--driver", "vfs", "--socket", socket, "--state-dir", path.join(root, "state")], { stderr: "pipe" });
      try {
        for (let i = 0; i < 100 && !fs.existsSync(socket); i++) await Bun.sleep(50);
        const init = await rawCall(socket, "/GraphDriver.Init", JSON.stringify({ Home: path.join(root, "home"), Opts: null, UIDMaps: null, GIDMaps: null }) + "\n");
        expect(JSON.parse(init.body.toString())).toEqual({ Err: "" });
        const status = JSON.parse((await rawCall(socket, "/GraphDriver.Status", null)).body.toString());
        expect(Object.fromEntries(status.Status)["Backing Filesystem"]).toBeTruthy();
        proc.kill("SIGTERM");
        expect(await proc.exited).toBe(0);
        expect(fs.existsSync(socket)).toBe(false);
        const log = await new Response(proc.stderr).text();
        expect(log).toMatch(/info call method=GraphDriver.Init id= ms=\d+ status=200/);
        expect(log).toMatch(/info call method=GraphDriver.Status id= ms=\d+ status=200/);
      } finally {
        proc.kill("SIGKILL");
        fs.rmSync(root, { recursive: true, force: true });
      }
    }, 20_000);
  });
}
