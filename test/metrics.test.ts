import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DURATION_BUCKETS, Metrics, countBytes } from "../src/core/metrics.ts";
import { parseMetricsAddress } from "../src/core/metrics-server.ts";
import { createApp, fixedSource } from "../src/graphdriver/app.ts";
import { file, makeTar } from "./helpers/layer-tar.ts";
import { TEST_DRIVERS, named, newDriver, sizeLimitsUnavailable } from "./helpers/drivers.ts";
import { parseProm, scrape, valueOf, type Sample } from "./helpers/prom.ts";
import { rawCall } from "./helpers/raw-http.ts";
import { SnapClient, failure } from "./helpers/snapshot-client.ts";

const BUN = path.resolve("node_modules/.bin/bun");

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-metrics-"));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** Every bucket of one histogram series, in `le` order, with its count. */
function buckets(samples: Sample[], name: string, labels: Record<string, string>): { le: number[]; counts: number[]; count: number; sum: number } {
  const rows = samples.filter((s) => s.name === `${name}_bucket` && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return {
    le: rows.map((r) => (r.labels.le === "+Inf" ? Infinity : Number(r.labels.le))),
    counts: rows.map((r) => r.value),
    count: valueOf(samples, `${name}_count`, labels) ?? NaN,
    sum: valueOf(samples, `${name}_sum`, labels) ?? NaN,
  };
}

describe("Metrics", () => {
  test("writes counters, cumulative histogram buckets and gauges in the text format", async () => {
    const m = new Metrics();
    m.observeCall("graphdriver", "GraphDriver.Get", "ok", 0.0003);
    m.observeCall("graphdriver", "GraphDriver.Get", "ok", 0.02);
    m.observeCall("graphdriver", "GraphDriver.Get", "not-found", 7);
    m.addCollector(() => [{ name: "strata_layers", help: "Layers.", labels: { driver: 'v"fs\\' }, value: 3 }]);
    m.addCollector(() => {
      throw new Error("not initialised");
    });
    const text = await m.render();
    expect(text).toContain("# TYPE strata_calls_total counter\n");
    expect(text).toContain("# TYPE strata_call_duration_seconds histogram\n");
    expect(text).toContain('strata_layers{driver="v\\"fs\\\\"} 3\n');
    const s = parseProm(text);
    expect(valueOf(s, "strata_calls_total", { method: "GraphDriver.Get", outcome: "ok" })).toBe(2);
    expect(valueOf(s, "strata_calls_total", { method: "GraphDriver.Get", outcome: "not-found" })).toBe(1);
    expect(valueOf(s, "strata_errors_total", { frontend: "graphdriver", kind: "not-found" })).toBe(1);
    const h = buckets(s, "strata_call_duration_seconds", { method: "GraphDriver.Get" });
    expect(h.le).toEqual([...DURATION_BUCKETS, Infinity]);
    const at = (le: number) => h.counts[h.le.indexOf(le)];
    expect([at(0.00025), at(0.0005), at(0.01), at(0.025), at(5), at(10), at(Infinity)]).toEqual([0, 1, 1, 2, 2, 3, 3]);
    expect(h.count).toBe(3);
    expect(h.sum).toBeCloseTo(7.0203, 6);
  });

  test("countBytes passes a stream through and counts it", async () => {
    let n = 0;
    const body = new Response(countBytes(new Response("hello, metrics").body!, (b) => (n += b)));
    expect(await body.text()).toBe("hello, metrics");
    expect(n).toBe(14);
  });

  test("--metrics addresses: unix sockets and loopback TCP only", () => {
    expect(parseMetricsAddress("unix:/run/strata/metrics.sock")).toEqual({ unix: "/run/strata/metrics.sock" });
    expect(parseMetricsAddress("unix:///run/m.sock")).toEqual({ unix: "/run/m.sock" });
    expect(parseMetricsAddress("localhost:9323")).toEqual({ tcp: { hostname: "localhost", port: 9323 } });
    expect(() => parseMetricsAddress("192.168.1.2:9323")).toThrow("loopback addresses only");
    expect(() => parseMetricsAddress("127.0.0.1:70000")).toThrow("out of range");
  });
});

describe("GraphDriver app metrics", () => {
  test("counts calls by method and outcome, bytes applied and exported, layers by driver", async () => {
    const driver = await newDriver(TEST_DRIVERS[0], path.join(root, "home"));
    const metrics = new Metrics();
    const app = createApp(fixedSource(driver), undefined, metrics);
    const post = (p: string, body?: unknown) => app.fetch(new Request(`http://plugin${p}`, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) + "\n" }));
    expect((await post("/GraphDriver.Create", { ID: "a", Parent: "" })).status).toBe(200);
    const tar = await makeTar([file("hello.txt", "hello")]);
    expect((await app.fetch(new Request("http://plugin/GraphDriver.ApplyDiff?id=a&parent=", { method: "POST", body: tar as BodyInit }))).status).toBe(200);
    const diff = await (await post("/GraphDriver.Diff", { ID: "a", Parent: "" })).arrayBuffer();
    expect((await post("/GraphDriver.Get", { ID: "missing", MountLabel: "" })).status).toBe(404);
    expect((await post("/GraphDriver.Create", { ID: "a", Parent: "" })).status).toBe(409);
    expect((await post("/GraphDriver.NoSuchCall", {})).status).toBe(404);
    const s = parseProm(await metrics.render());
    const calls = (method: string, outcome: string) => valueOf(s, "strata_calls_total", { frontend: "graphdriver", method, outcome });
    expect(calls("GraphDriver.Create", "ok")).toBe(1);
    expect(calls("GraphDriver.Create", "already-exists")).toBe(1);
    expect(calls("GraphDriver.Get", "not-found")).toBe(1);
    expect(calls("unknown", "not-found")).toBe(1);
    expect(s.some((x) => x.labels.method === "GraphDriver.NoSuchCall")).toBe(false);
    expect(valueOf(s, "strata_applied_bytes_total", { driver: "vfs" })).toBe(tar.byteLength);
    expect(valueOf(s, "strata_exported_bytes_total", { driver: "vfs" })).toBe(diff.byteLength);
    expect(valueOf(s, "strata_layers", { driver: "vfs" })).toBe(1);
    expect(valueOf(s, "strata_mounts", { driver: "vfs" })).toBe(0);
    expect(buckets(s, "strata_call_duration_seconds", { method: "GraphDriver.Create" }).count).toBe(2);
  });

  const overlay = TEST_DRIVERS.find((d) => d.name === "overlay")!;
  test.skipIf(!!sizeLimitsUnavailable)(named("reports size-limited layers with their limit and use (overlay)", sizeLimitsUnavailable), async () => {
    const driver = await newDriver(overlay, path.join(root, "home"));
    const metrics = new Metrics();
    const app = createApp(fixedSource(driver), undefined, metrics);
    const post = (p: string, body: unknown) => app.fetch(new Request(`http://plugin${p}`, { method: "POST", body: JSON.stringify(body) + "\n" }));
    try {
      expect((await post("/GraphDriver.Create", { ID: "base", Parent: "" })).status).toBe(200);
      expect((await post("/GraphDriver.CreateReadWrite", { ID: "c1", Parent: "base", StorageOpt: { size: "64M" } })).status).toBe(200);
      const dir = (await (await post("/GraphDriver.Get", { ID: "c1", MountLabel: "" })).json()).Dir as string;
      const before = valueOf(parseProm(await metrics.render()), "strata_size_used_bytes", { driver: "overlay", layer: "c1" })!;
      fs.writeFileSync(path.join(dir, "blob"), Buffer.alloc(8 << 20, 1));
      fs.fsyncSync(fs.openSync(path.join(dir, "blob"), "r"));
      const s = parseProm(await metrics.render());
      expect(valueOf(s, "strata_size_limited_layers", { driver: "overlay" })).toBe(1);
      expect(valueOf(s, "strata_size_limit_bytes", { driver: "overlay", layer: "c1" })).toBe(64 << 20);
      expect(valueOf(s, "strata_size_used_bytes", { driver: "overlay", layer: "c1" })! - before).toBeGreaterThanOrEqual(8 << 20);
      expect(valueOf(s, "strata_mounts", { driver: "overlay" })).toBe(1);
      expect(valueOf(s, "strata_layers", { driver: "overlay" })).toBe(2);
      await post("/GraphDriver.Put", { ID: "c1" });
    } finally {
      await driver.cleanup();
      await driver.remove("c1").catch(() => {});
    }
  });
});

/** Start `argv` and wait for its "serving metrics" line; returns where and the process. */
async function startWithMetrics(argv: string[]): Promise<{ proc: ReturnType<typeof Bun.spawn>; where: string; log: () => string }> {
  const proc = Bun.spawn(argv, { stderr: "pipe", stdout: "ignore" });
  const reader = (proc.stderr as ReadableStream<Uint8Array>).getReader();
  let log = "";
  let where = "";
  const deadline = Date.now() + 20_000;
  while (where === "" || !/serving (socket|snapshotter)/.test(log)) {
    const { value, done } = await reader.read();
    if (done || Date.now() > deadline) throw new Error(`strata did not start serving metrics:\n${log}`);
    log += new TextDecoder().decode(value);
    where = /serving metrics metrics=(\S+)/.exec(log)?.[1] ?? "";
  }
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return;
      log += new TextDecoder().decode(value);
    }
  })();
  return { proc, where, log: () => log };
}

describe("strata serve --metrics", () => {
  for (const kind of ["unix", "tcp"] as const) {
    test(`serves GET /metrics on a ${kind === "unix" ? "unix socket" : "loopback TCP port"} after real calls`, async () => {
      const socket = path.join(root, "plugin.sock");
      const address = kind === "unix" ? `unix:${path.join(root, "metrics.sock")}` : "127.0.0.1:0";
      const { proc, where } = await startWithMetrics([
        BUN, "src/main.bun.ts", "serve", "--driver", "vfs", "--socket", socket, "--state-dir", path.join(root, "state"), "--metrics", address,
      ]);
      try {
        if (kind === "unix") expect(fs.statSync(where.slice(5)).mode & 0o777).toBe(0o660);
        const call = async (m: string, body: unknown) => (await rawCall(socket, `/${m}`, JSON.stringify(body) + "\n")).status;
        expect(await call("GraphDriver.Init", { Home: path.join(root, "home"), Opts: null, UIDMaps: null, GIDMaps: null })).toBe(200);
        expect(await call("GraphDriver.Create", { ID: "l1", Parent: "" })).toBe(200);
        expect(await call("GraphDriver.Create", { ID: "l2", Parent: "l1" })).toBe(200);
        expect(await call("GraphDriver.Remove", { ID: "l1" })).toBe(409);
        expect(await call("GraphDriver.Exists", { ID: "l2" })).toBe(200);
        const res = await scrape(where);
        expect(res.status).toBe(200);
        expect(res.type).toBe("text/plain; version=0.0.4; charset=utf-8");
        const s = parseProm(res.text);
        expect(valueOf(s, "strata_calls_total", { method: "GraphDriver.Create", outcome: "ok" })).toBe(2);
        expect(valueOf(s, "strata_calls_total", { method: "GraphDriver.Remove", outcome: "busy" })).toBe(1);
        expect(valueOf(s, "strata_errors_total", { frontend: "graphdriver", kind: "busy" })).toBe(1);
        expect(valueOf(s, "strata_layers", { driver: "vfs" })).toBe(2);
        expect(valueOf(s, "process_resident_memory_bytes")).toBeGreaterThan(1 << 20);
        const h = buckets(s, "strata_call_duration_seconds", { method: "GraphDriver.Create" });
        expect(h.count).toBe(2);
        expect(h.counts.at(-1)).toBe(2);
        expect(h.counts.every((c, i) => i === 0 || c >= h.counts[i - 1])).toBe(true);
        expect((await (where.startsWith("unix:") ? fetch("http://m/other", { unix: where.slice(5) } as RequestInit) : fetch(`http://${where}/other`))).status).toBe(404);
        proc.kill("SIGTERM");
        expect(await proc.exited).toBe(0);
        if (kind === "unix") expect(fs.existsSync(where.slice(5))).toBe(false);
      } finally {
        proc.kill("SIGKILL");
      }
    }, 30_000);
  }
});

describe("strata snapshotter --metrics", () => {
  for (const kind of ["unix", "tcp"] as const) {
    test(`counts gRPC calls by method and outcome (${kind})`, async () => {
      const socket = path.join(root, "snap.sock");
      const address = kind === "unix" ? `unix:${path.join(root, "metrics.sock")}` : "127.0.0.1:0";
      const { proc, where } = await startWithMetrics([
        BUN, "src/main.bun.ts", "snapshotter", "--driver", "vfs", "--socket", socket, "--root", path.join(root, "snap"), "--metrics", address,
      ]);
      const client = new SnapClient(socket);
      try {
        await client.prepare("ns/1/a");
        await client.commit("ns/1/base", "ns/1/a");
        await client.prepare("ns/1/b", "ns/1/base");
        await client.stat("ns/1/b");
        expect((await failure(client.stat("ns/1/nope"))).code).toBe(5);
        expect((await failure(client.remove("ns/1/base"))).code).toBe(9);
        await client.list();
        const s = parseProm((await scrape(where)).text);
        const calls = (method: string, outcome: string) => valueOf(s, "strata_calls_total", { frontend: "snapshotter", method, outcome });
        expect(calls("Prepare", "ok")).toBe(2);
        expect(calls("Commit", "ok")).toBe(1);
        expect(calls("Stat", "ok")).toBe(1);
        expect(calls("Stat", "not-found")).toBe(1);
        expect(calls("Remove", "failed-precondition")).toBe(1);
        expect(valueOf(s, "strata_errors_total", { frontend: "snapshotter", kind: "failed-precondition" })).toBe(1);
        expect(calls("List", "ok")).toBe(1);
        expect(valueOf(s, "strata_layers", { driver: "vfs" })).toBe(2);
        expect(buckets(s, "strata_call_duration_seconds", { frontend: "snapshotter", method: "Prepare" }).count).toBe(2);
      } finally {
        client.close();
        proc.kill("SIGTERM");
        await proc.exited;
      }
    }, 30_000);
  }
});
