/**
 * The plugin itself, no dockerd: layer tars streamed into ApplyDiff over the unix socket (chunked,
 * ~25 KB chunks, as dockerd sends them), Diff read back, and the small calls' round trips, beside
 * GNU tar on the same filesystem (the floor). Rounds are interleaved (tar, then each driver), the
 * medians printed with ratios to the floor.
 *
 *   ./compile.sh && node_modules/.bin/bun bench/plugin.ts [--dir /var/tmp] [--drivers overlay,vfs,erofs]
 *     [--rounds 3] [--files 30000] [--big-mb 256] [--big-files 4] [--calls 2000]
 *
 * Root (the drivers mount). Prints Markdown tables; not part of the test command.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    dir: { type: "string", default: "/var/tmp" },
    drivers: { type: "string", default: "overlay,vfs,erofs" },
    rounds: { type: "string", default: "3" },
    files: { type: "string", default: "30000" },
    "big-mb": { type: "string", default: "256" },
    "big-files": { type: "string", default: "4" },
    calls: { type: "string", default: "2000" },
    binary: { type: "string", default: "dist/strata" },
  },
});
const ROUNDS = Number(values.rounds);
const DRIVERS = values.drivers.split(",");
const CHUNK = 25_000;
const DIFFSIZE_CALLS = 30;

const work = fs.mkdtempSync(path.join(values.dir, "strata-plugin-bench-"));
const must = (cmd: string, ...args: string[]) => {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))];

/** A tree of many small files (1-16 KiB, sizes from a fixed seed), some hardlinks; and its tar. */
function smallTree(dir: string): void {
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const n = Number(values.files);
  const buf = Buffer.alloc(16 * 1024, "strata ");
  const dirs = Math.ceil(n / 100);
  for (let d = 0; d < dirs; d++) fs.mkdirSync(path.join(dir, `d${d}`), { recursive: true });
  for (let i = 0; i < n; i++) {
    const size = 1024 + Math.floor(rand() * 15 * 1024);
    buf.writeUInt32LE(i, 0);
    fs.writeFileSync(path.join(dir, `d${i % dirs}`, `f${i}`), buf.subarray(0, size));
  }
  for (let i = 0; i * dirs < n && i < 100; i++) fs.linkSync(path.join(dir, "d0", `f${i * dirs}`), path.join(dir, "d1", `h${i}`));
}

function bigTree(dir: string): void {
  const mb = Number(values["big-mb"]);
  const block = Buffer.alloc(1024 * 1024);
  for (let f = 0; f < Number(values["big-files"]); f++) {
    const fd = fs.openSync(path.join(dir, `big${f}`), "w");
    for (let m = 0; m < mb; m++) {
      block.writeUInt32LE(f * mb + m, 0);
      fs.writeSync(fd, block);
    }
    fs.closeSync(fd);
  }
}

function makeTar(name: string, fill: (dir: string) => void): { tar: string; bytes: number } {
  const src = path.join(work, `${name}-src`);
  fs.mkdirSync(src);
  fill(src);
  const tar = path.join(work, `${name}.tar`);
  must("tar", "--numeric-owner", "-C", src, "-cf", tar, ".");
  fs.rmSync(src, { recursive: true });
  return { tar, bytes: fs.statSync(tar).size };
}

/** One HTTP/1.1 request on its own connection; the body streamed chunked from a file when given. */
function call(socket: string, urlPath: string, body: string | { file: string } | null, sink?: (chunk: Buffer) => void): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    let head: Buffer | null = null;
    const parts: Buffer[] = [];
    let pending = Buffer.alloc(0);
    conn.on("error", reject);
    conn.on("data", (d: Buffer) => {
      if (head === null) {
        pending = Buffer.concat([pending, d]);
        const at = pending.indexOf("\r\n\r\n");
        if (at < 0) return;
        head = pending.subarray(0, at);
        d = pending.subarray(at + 4);
      }
      if (sink) sink(d);
      else parts.push(d);
    });
    conn.on("end", () => {
      const status = Number((head ?? Buffer.alloc(0)).toString("latin1").split(" ")[1]);
      resolve({ status, body: Buffer.concat(parts).toString() });
    });
    const base = `POST ${urlPath} HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\n`;
    if (body !== null && typeof body === "object") {
      conn.write(`${base}Transfer-Encoding: chunked\r\n\r\n`);
      const stream = fs.createReadStream(body.file, { highWaterMark: CHUNK });
      stream.on("data", (c: Buffer) => {
        conn.write(`${c.length.toString(16)}\r\n`);
        if (!conn.write(Buffer.concat([c, Buffer.from("\r\n")]))) {
          stream.pause();
          conn.once("drain", () => stream.resume());
        }
      });
      stream.on("end", () => conn.write("0\r\n\r\n"));
    } else {
      const payload = Buffer.from(body ?? "");
      conn.write(`${base}Content-Length: ${payload.length}\r\n\r\n`);
      conn.write(payload);
    }
  });
}

/** One round trip of a JSON call on a kept-alive connection, as dockerd's client keeps them. */
class KeptAlive {
  #conn: net.Socket;
  #waiting: ((text: string) => void) | null = null;
  #buf = "";
  constructor(socket: string) {
    this.#conn = net.connect(socket);
    this.#conn.setEncoding("latin1");
    this.#conn.on("data", (d: string) => {
      this.#buf += d;
      const at = this.#buf.indexOf("\r\n\r\n");
      if (at < 0) return;
      const len = Number(/content-length: *(\d+)/i.exec(this.#buf.slice(0, at))?.[1] ?? 0);
      if (this.#buf.length < at + 4 + len) return;
      const text = this.#buf.slice(at + 4, at + 4 + len);
      this.#buf = this.#buf.slice(at + 4 + len);
      this.#waiting?.(text);
    });
  }
  call(urlPath: string, body: string): Promise<string> {
    return new Promise((resolve) => {
      this.#waiting = resolve;
      this.#conn.write(`POST ${urlPath} HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
  }
  close(): void {
    this.#conn.destroy();
  }
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** A strata serve on its own socket and Home. */
async function startStrata(driver: string): Promise<{ socket: string; home: string; pid: number; stop: () => Promise<void> }> {
  const base = fs.mkdtempSync(path.join(work, `${driver}-`));
  const socket = path.join(base, "strata.sock");
  const home = path.join(base, "home");
  const child = spawn(path.resolve(values.binary), ["serve", "--driver", driver, "--socket", socket, "--state-dir", path.join(base, "state"), "--log-level", "warn"], { stdio: ["ignore", "inherit", "inherit"] });
  for (let i = 0; i < 200 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 25));
  const init = await call(socket, "/GraphDriver.Init", JSON.stringify({ Home: home, Opts: [], UIDMaps: null, GIDMaps: null }));
  if (init.status !== 200 || JSON.parse(init.body).Err) throw new Error(`Init on ${driver}: ${init.body}`);
  return {
    socket, home, pid: child.pid!,
    stop: async () => {
      await call(socket, "/GraphDriver.Cleanup", "{}");
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}

const ok = (r: { status: number; body: string }, what: string) => {
  if (r.status !== 200 || (r.body.startsWith("{") && JSON.parse(r.body).Err)) throw new Error(`${what}: ${r.status} ${r.body}`);
};

console.log(`building the tars in ${work}…`);
const TARS = [
  { row: `${values.files} files of 1-16 KiB`, ...makeTar("small", smallTree) },
  { row: `${values["big-files"]} × ${values["big-mb"]} MiB files`, ...makeTar("big", bigTree) },
];

type Row = { apply: number[]; diff: number[] };
const results = new Map<string, Map<string, Row>>(); // subject → tar → times
const subject = (s: string, t: string) => {
  if (!results.has(s)) results.set(s, new Map());
  const m = results.get(s)!;
  if (!m.has(t)) m.set(t, { apply: [], diff: [] });
  return m.get(t)!;
};
const calls: Record<string, Record<string, number[]>> = {};
const rss: Record<string, number> = {};

for (let r = 0; r < ROUNDS; r++) {
  for (const t of TARS) {
    // The floor: GNU tar extracting onto the same filesystem, then syncing it (strata's layers are
    // durable when ApplyDiff answers), and tar -c of the result to /dev/null.
    const dest = path.join(work, `floor-${r}`);
    fs.mkdirSync(dest);
    subject("tar -x / tar -c", t.row).apply.push(await timed(async () => must("tar", "--numeric-owner", "-C", dest, "-xf", t.tar)));
    subject("tar -x + sync -f", t.row).apply.push(subject("tar -x / tar -c", t.row).apply.at(-1)! + (await timed(async () => must("sync", "-f", dest))));
    // Through a pipe: GNU tar writing to /dev/null itself skips reading the files.
    subject("tar -x / tar -c", t.row).diff.push(await timed(async () => must("sh", "-c", `tar --numeric-owner -C '${dest}' -cf - . | cat >/dev/null`)));
    fs.rmSync(dest, { recursive: true });
  }
  for (const driver of DRIVERS) {
    const s = await startStrata(driver);
    try {
      for (const [i, t] of TARS.entries()) {
        const id = `layer${i}`;
        ok(await call(s.socket, "/GraphDriver.Create", JSON.stringify({ ID: id, Parent: "", MountLabel: "", StorageOpt: null })), "Create");
        subject(`strata ${driver}`, t.row).apply.push(await timed(async () => ok(await call(s.socket, `/GraphDriver.ApplyDiff?id=${id}&parent=`, { file: t.tar }), "ApplyDiff")));
        let bytes = 0;
        subject(`strata ${driver}`, t.row).diff.push(await timed(async () => ok(await call(s.socket, "/GraphDriver.Diff", JSON.stringify({ ID: id, Parent: "" }), (c) => (bytes += c.length)), "Diff")));
        if (bytes < t.bytes * 0.9) throw new Error(`Diff of ${id} on ${driver}: ${bytes} bytes of ${t.bytes}`);
      }
      // The small calls, on one kept-alive connection against a container layer on the small tree.
      ok(await call(s.socket, "/GraphDriver.CreateReadWrite", JSON.stringify({ ID: "c", Parent: "layer0", MountLabel: "", StorageOpt: null })), "CreateReadWrite");
      const k = new KeptAlive(s.socket);
      // Held mounted, as a running container's layer is: the loop's Get/Put count references.
      await k.call("/GraphDriver.Get", JSON.stringify({ ID: "c", MountLabel: "" }));
      const per = (calls[`strata ${driver}`] ??= {});
      const bodies: Record<string, string> = {
        Exists: JSON.stringify({ ID: "c" }),
        Get: JSON.stringify({ ID: "c", MountLabel: "" }),
        Put: JSON.stringify({ ID: "c" }),
        "DiffSize (container)": JSON.stringify({ ID: "c", Parent: "layer0" }),
      };
      for (let n = 0; n < Number(values.calls) / ROUNDS; n++) {
        for (const [name, body] of Object.entries(bodies)) {
          // DiffSize walks the layer (vfs compares two whole trees): a few samples per round, not thousands.
          if (name.startsWith("DiffSize") && n >= DIFFSIZE_CALLS / ROUNDS) continue;
          const method = name.split(" ")[0];
          const start = performance.now();
          await k.call(`/GraphDriver.${method}`, body);
          (per[name] ??= []).push((performance.now() - start) * 1000);
        }
      }
      await k.call("/GraphDriver.Put", JSON.stringify({ ID: "c" }));
      k.close();
      const hwm = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${s.pid}/status`, "utf8"))?.[1];
      rss[`strata ${driver}`] = Math.max(rss[`strata ${driver}`] ?? 0, Number(hwm) / 1024);
      for (const id of ["c", "layer0", "layer1"]) ok(await call(s.socket, "/GraphDriver.Remove", JSON.stringify({ ID: id })), "Remove");
    } finally {
      await s.stop();
    }
  }
}

// The round trips' floor: a bare Bun.serve on a unix socket (its own process, as strata is)
// answering every call with a fixed JSON body, through the same client.
{
  const base = fs.mkdtempSync(path.join(work, "bare-"));
  const socket = path.join(base, "bare.sock");
  const script = `Bun.serve({ unix: ${JSON.stringify(socket)}, fetch: async (req) => { await req.text(); return new Response('{"Exists":true}', { headers: { "content-type": "application/vnd.docker.plugins.v1+json" } }); } });`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "inherit", "inherit"] });
  for (let i = 0; i < 200 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 25));
  const k = new KeptAlive(socket);
  const times: number[] = [];
  for (let n = 0; n < Number(values.calls); n++) {
    const start = performance.now();
    await k.call("/GraphDriver.Exists", JSON.stringify({ ID: "c" }));
    times.push((performance.now() - start) * 1000);
  }
  k.close();
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  calls["bare Bun.serve (floor)"] = { Exists: times };
}

const floor = results.get("tar -x / tar -c")!;
const fmt = (ms: number, base: number) => `${Math.round(ms)} ms (${(ms / base).toFixed(2)}x)`;
for (const t of TARS) {
  const mb = t.bytes / 1e6;
  console.log(`\n### ${t.row} (tar ${mb.toFixed(0)} MB), ${ROUNDS} rounds, median ms and ratio to GNU tar`);
  console.log("| subject | ApplyDiff (tar -x) | MB/s | Diff (tar -c) |");
  console.log("|---|---|---|---|");
  const base = floor.get(t.row)!;
  for (const [name, rows] of results) {
    const row = rows.get(t.row)!;
    const a = median(row.apply);
    const d = row.diff.length ? fmt(median(row.diff), median(base.diff)) : "–";
    console.log(`| ${name} | ${fmt(a, median(base.apply))} | ${(mb / (a / 1000)).toFixed(0)} | ${d} |`);
  }
}
console.log(`\n### Round trips on one kept-alive connection (µs p50 / p99, ${values.calls} calls each, DiffSize ${DIFFSIZE_CALLS}) and peak RSS`);
console.log(`| subject | ${Object.keys(Object.values(calls)[0] ?? {}).join(" | ")} | peak RSS |`);
console.log(`|---|${Object.keys(Object.values(calls)[0] ?? {}).map(() => "---|").join("")}---|`);
for (const [name, per] of Object.entries(calls)) {
  const names = Object.keys(Object.values(calls)[0] ?? {});
  const cells = names.map((n) => (per[n] ? `${Math.round(quantile(per[n], 0.5))} / ${Math.round(quantile(per[n], 0.99))}` : "–"));
  console.log(`| ${name} | ${cells.join(" | ")} | ${rss[name] === undefined ? "–" : `${rss[name].toFixed(0)} MB`} |`);
}
fs.rmSync(work, { recursive: true, force: true });
