import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { formatStatus } from "../src/graphdriver/status-client.ts";
import { rawCall } from "./helpers/raw-http.ts";
import { STRATA_COMMANDS } from "./helpers/strata-commands.ts";


async function run(argv: string[]) {
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

describe("formatStatus", () => {
  test("aligns the values in one column", () => {
    expect(formatStatus([["Driver", "vfs"], ["Backing Filesystem", "extfs"]])).toBe(
      "Driver:             vfs\nBacking Filesystem: extfs\n",
    );
  });
});

for (const { name, argv: cmd, skip } of STRATA_COMMANDS) {
  describe(`strata status (${name})`, () => {
    const why = skip ? ` (skipped: ${skip})` : "";

    test.skipIf(!!skip)(`prints the running plugin's Status as aligned key: value lines${why}`, async () => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-status-"));
      const socket = path.join(root, "s.sock");
      const proc = Bun.spawn([...cmd, "serve", "--driver", "vfs", "--socket", socket, "--state-dir", path.join(root, "state")], { stderr: "ignore" });
      try {
        for (let i = 0; i < 600 && !fs.existsSync(socket); i++) await Bun.sleep(50);
        const before = await run([...cmd, "status", "--socket", socket]);
        expect(before.code).toBe(1);
        expect(before.err).toContain("not initialised");

        await rawCall(socket, "/GraphDriver.Init", JSON.stringify({ Home: path.join(root, "home"), Opts: null, UIDMaps: null, GIDMaps: null }) + "\n");
        const wire = JSON.parse((await rawCall(socket, "/GraphDriver.Status", null)).body.toString()).Status as [string, string][];
        const r = await run([...cmd, "status", "--socket", socket]);
        expect(r.err).toBe("");
        expect(r.code).toBe(0);
        expect(r.out).toBe(formatStatus(wire));
        expect(r.out).toMatch(/^Backing Filesystem: +\S+$/m);
        const columns = new Set(r.out.trimEnd().split("\n").map((l) => l.search(/(?<=: +)\S/)));
        expect(columns.size).toBe(1);
      } finally {
        proc.kill("SIGKILL");
        fs.rmSync(root, { recursive: true, force: true });
      }
    }, 60_000);

    test.skipIf(!!skip)(`exits 1 naming the socket when nothing listens${why}`, async () => {
      const socket = path.join(os.tmpdir(), `strata-status-none-${process.pid}.sock`);
      const r = await run([...cmd, "status", "--socket", socket]);
      expect(r.code).toBe(1);
      expect(r.out).toBe("");
      expect(r.err).toBe(`strata: Cannot reach strata on "${socket}": nothing is listening (ENOENT)\n`);
    }, 60_000);
  });
}
