/**
 * Smoke test of the operator tools on the Deno entry (`src/main.deno.ts`): doctor's --json and exit
 * status, serve and snapshotter with --metrics on a unix socket and a loopback TCP port, scraped
 * after real calls, --log-format json, and check / check --repair on a store serve left. bun:test cannot run Deno, so this runs alone:
 * `node_modules/.bin/deno run -A test/ops-deno-smoke.ts` (as root, from the repo root); prints
 * "N passed, N failed" and exits non-zero on any failure.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { unixGet } from "../src/doctor/docker.ts";
import { smoke } from "./helpers/smoke-tally.ts";

const DENO = Deno.execPath();
const tally = smoke();
const check = tally.ok;

/** POST a JSON body on the plugin socket as dockerd does; the status code. */
function post(socket: string, p: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    const chunks: Uint8Array[] = [];
    const payload = JSON.stringify(body) + "\n";
    conn.on("connect", () => conn.write(`POST ${p} HTTP/1.1\r\nHost: \r\nConnection: close\r\nContent-Length: ${payload.length}\r\n\r\n${payload}`));
    conn.on("data", (d: Uint8Array) => chunks.push(d));
    conn.on("error", reject);
    conn.on("end", () => resolve(Number(new TextDecoder().decode(chunks[0]).split(" ")[1])));
  });
}

/** GET /metrics from `unix:/path` or `HOST:PORT`. */
async function scrape(where: string): Promise<string> {
  if (where.startsWith("unix:")) return (await unixGet(where.slice(5), "/metrics")).body;
  return await (await fetch(`http://${where}/metrics`)).text();
}

const sample = (text: string, series: string) => text.split("\n").find((l) => l.startsWith(`${series} `))?.split(" ")[1];

/** Start the Deno entry with `args` and wait for its "serving metrics" and serving lines. */
type LogLine = Record<string, unknown>;
async function start(args: string[]): Promise<{ child: Deno.ChildProcess; where: string; lines: () => LogLine[] }> {
  const child = new Deno.Command(DENO, { args: ["run", "-A", "src/main.deno.ts", ...args], stderr: "piped", stdout: "null" }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  const deadline = Date.now() + 30_000;
  while (!/"msg":"serving( snapshotter)?"/.test(log)) {
    const { value, done } = await reader.read();
    if (done || Date.now() > deadline) throw new Error(`did not start:\n${log}`);
    log += value;
  }
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: "", done: true }));
      if (done) return;
      log += value;
    }
  })();
  const lines = () => log.trim().split("\n").map((l) => JSON.parse(l) as LogLine);
  const where = String(lines().find((l) => l.msg === "serving metrics")?.metrics ?? "");
  return { child, where, lines };
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-ops-deno-"));
try {
  // doctor on the Deno entry: --json, exit 0, the drivers it can init.
  const out = await new Deno.Command(DENO, {
    args: ["run", "-A", "src/main.deno.ts", "doctor", "--json", "--root", path.join(root, "store"), "--docker-socket", path.join(root, "none.sock")],
    stdout: "piped", stderr: "piped",
  }).output();
  const report = JSON.parse(new TextDecoder().decode(out.stdout));
  const by = Object.fromEntries(report.checks.map((c: { name: string }) => [c.name, c]));
  check("doctor exits 0", out.code === 0, new TextDecoder().decode(out.stderr));
  check("doctor reports runtime deno", report.runtime === "deno" && report.ok === true);
  check("doctor: vfs initialises", by["driver vfs"]?.status === "ok");
  check("doctor: auto picks a driver", by["driver auto"]?.status === "ok" && /^would pick /.test(by["driver auto"].detail));
  check("doctor: kernel line", by.kernel?.detail.startsWith(os.release()));
  check("doctor leaves nothing beside the store", fs.readdirSync(root).length === 0, fs.readdirSync(root).join(","));

  for (const kind of ["unix", "tcp"]) {
    const socket = path.join(root, `plugin-${kind}.sock`);
    const metrics = kind === "unix" ? `unix:${path.join(root, "metrics.sock")}` : "127.0.0.1:0";
    const s = await start(["serve", "--driver", "vfs", "--socket", socket, "--state-dir", path.join(root, `state-${kind}`), "--metrics", metrics, "--log-format", "json"]);
    try {
      check(`serve ${kind}: metrics address logged`, kind === "unix" ? s.where === metrics : /^127\.0\.0\.1:\d+$/.test(s.where), s.where);
      await post(socket, "/GraphDriver.Init", { Home: path.join(root, `home-${kind}`), Opts: null, UIDMaps: null, GIDMaps: null });
      const created = await post(socket, "/GraphDriver.Create", { ID: "a", Parent: "" });
      const missing = await post(socket, "/GraphDriver.Get", { ID: "nope", MountLabel: "" });
      check(`serve ${kind}: calls answered`, created === 200 && missing === 404, `${created} ${missing}`);
      const text = await scrape(s.where);
      check(`serve ${kind}: Create counted`, sample(text, 'strata_calls_total{frontend="graphdriver",method="GraphDriver.Create",outcome="ok"}') === "1");
      check(`serve ${kind}: not-found counted`, sample(text, 'strata_errors_total{frontend="graphdriver",kind="not-found"}') === "1");
      check(`serve ${kind}: histogram +Inf bucket`, sample(text, 'strata_call_duration_seconds_bucket{frontend="graphdriver",method="GraphDriver.Create",le="+Inf"}') === "1");
      check(`serve ${kind}: layers gauge`, sample(text, 'strata_layers{driver="vfs"}') === "1");
      check(`serve ${kind}: RSS`, Number(sample(text, "process_resident_memory_bytes")) > 1 << 20);
      check(`serve ${kind}: json log line per call`, s.lines().some((l) => l.msg === "call failed" && l.method === "GraphDriver.Get" && l.status === 404));
    } finally {
      s.child.kill("SIGTERM");
      check(`serve ${kind}: stops with 0`, (await s.child.status).code === 0);
    }
  }

  // check on the Deno entry: the store serve left, clean, then with a dangling record repaired.
  const checkCli = async (...args: string[]) => {
    const o = await new Deno.Command(DENO, { args: ["run", "-A", "src/main.deno.ts", "check", ...args], stdout: "piped", stderr: "piped" }).output();
    return { code: o.code, out: new TextDecoder().decode(o.stdout) };
  };
  const home = path.join(root, "home-unix");
  const clean = await checkCli(home, "--json");
  check("check: a clean store exits 0", clean.code === 0 && JSON.parse(clean.out).driver === "vfs", clean.out);
  fs.writeFileSync(path.join(home, "meta", "ghost"), '{"parent":""}\n');
  const damaged = await checkCli(home, "--json");
  check("check: a record without its layer exits 1", damaged.code === 1 && JSON.parse(damaged.out).findings[0]?.kind === "record-without-layer", damaged.out);
  const repaired = await checkCli(home, "--repair");
  check("check --repair removes it", repaired.code === 0 && !fs.existsSync(path.join(home, "meta", "ghost")), repaired.out);

  const snap = await start(["snapshotter", "--driver", "vfs", "--socket", path.join(root, "snap.sock"), "--root", path.join(root, "snap"), "--metrics", "127.0.0.1:0", "--log-format", "json"]);
  try {
    const text = await scrape(snap.where);
    check("snapshotter: metrics served", sample(text, 'strata_layers{driver="vfs"}') === "0" && Number(sample(text, "process_resident_memory_bytes")) > 0, text.slice(0, 400));
  } finally {
    snap.child.kill("SIGTERM");
    check("snapshotter: stops with 0", (await snap.child.status).code === 0);
  }
} catch (err) {
  tally.fail("smoke aborted", err);
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
tally.finish();
