/**
 * Side-by-side benchmark of strata's snapshotter and containerd's own overlayfs, one run, ratios.
 *
 *   ./compile.sh && node_modules/.bin/bun bench/snapshotter.ts [--rounds 3] [--runs 10] [--layers 100]
 *       [--mb 200] [--calls 500] [--call-rounds 5] [--only calls|e2e] [--strata dist/strata]
 *
 * Two parts, each interleaved (every round visits every snapshotter, in a rotating order):
 *  - calls: bench/snapshotter/ (Go, GOPATH mode against Debian's containerd sources) times each
 *    snapshotter call, p50/p99: containerd's overlay in-process and through snapshotservice + the
 *    proxy client on a unix socket, strata overlay and vfs through the same proxy client; on a
 *    one-layer parent and on a 100-layer chain.
 *  - e2e: one private containerd 1.6 per snapshotter (test/e2e/containerd.ts), all running at once:
 *    `ctr run --rm`, `ctr images import` of a many-layer image and of busybox + MB megabytes in one
 *    layer, `ctr run --rm` on the many-layer image, `ctr images rm --sync` of it; medians.
 *
 * Needs root, containerd + ctr + runc, golang-go and golang-github-containerd-containerd-dev.
 * Prints Markdown tables on stdout, progress on stderr.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { ContainerdEnv, type SnapshotterChoice } from "../test/e2e/containerd.ts";
import { run, succeeded } from "../test/e2e/harness.ts";
import { makeBusyboxOciImage, makeManyLayerOciImage, writeOciArchive, type OciImage } from "../test/e2e/oci-image.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    calls: { type: "string", default: "500" },
    "call-rounds": { type: "string", default: "5" },
    runs: { type: "string", default: "10" },
    layers: { type: "string", default: "100" },
    mb: { type: "string", default: "200" },
    only: { type: "string" },
    strata: { type: "string", default: "dist/strata" },
  },
});
const ROUNDS = Number(values.rounds);
const CALLS = Number(values.calls);
const CALL_ROUNDS = Number(values["call-rounds"]);
const RUNS = Number(values.runs);
const LAYERS = Number(values.layers);
const MB = Number(values.mb);
const STRATA = path.resolve(values.strata!);
const BENCH_DIR = path.join(import.meta.dir, "snapshotter");
// The Go toolchain in GOPATH mode against Debian's packaged sources: offline, no cgo.
const GO_ENV = { ...process.env, GO111MODULE: "off", GOPATH: "/usr/share/gocode", GOPROXY: "off", GOFLAGS: "", CGO_ENABLED: "0" };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const log = (msg: string) => console.error(`bench: ${msg}`);

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** One line per fact a reader needs to compare runs across machines. */
async function machine(): Promise<string> {
  const first = async (argv: string[]) => (await run(argv)).stdout.split("\n")[0]!.trim();
  const distro = /PRETTY_NAME="([^"]+)"/.exec(fs.readFileSync("/etc/os-release", "utf8"))?.[1] ?? "?";
  const cpu = os.cpus();
  return [
    `${distro}, kernel ${os.release()}, ${cpu.length} × ${cpu[0]?.model ?? "?"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    `${await first(["containerd", "--version"])}; ${await first(["runc", "--version"])}; ${await first(["go", "version"])}; bun ${Bun.version}`,
    `strata: ${await first([STRATA, "--version"])} (${path.relative(process.cwd(), STRATA)}); /tmp on ${await first(["findmnt", "-no", "FSTYPE", "-T", os.tmpdir()])}`,
    loadLine("at start"),
  ].map((l) => `- ${l}`).join("\n");
}

/** The load averages: other work on the machine shows in them (and in the p99s). */
function loadLine(when: string): string {
  return `load average ${when}: ${os.loadavg().map((l) => l.toFixed(2)).join(", ")}`;
}

/** Build bench/snapshotter and run it: its Markdown table. */
async function perCall(work: string): Promise<string> {
  const exe = path.join(work, "snapshotter-bench");
  log("building bench/snapshotter (go, GOPATH mode)");
  succeeded(await run(["go", "build", "-o", exe, "."], { cwd: BENCH_DIR, env: GO_ENV, timeoutMs: 600_000 }));
  log(`per-call latency: ${CALLS} iterations in ${CALL_ROUNDS} rounds`);
  const res = await run([exe, "-strata", STRATA, "-n", String(CALLS), "-rounds", String(CALL_ROUNDS), "-tmp", work, "-format", "md"], { timeoutMs: 1_800_000 });
  if (res.code !== 0) throw new Error(`bench/snapshotter failed (${res.code}):\n${res.stderr}`);
  return res.stdout;
}

const SNAPSHOTTERS: Array<[string, SnapshotterChoice]> = [
  ["containerd overlayfs", { builtin: "overlayfs" }],
  ["strata overlay", { strata: { command: [STRATA], driver: "overlay", logLevel: "warn" } }],
  ["strata vfs", { strata: { command: [STRATA], driver: "vfs", logLevel: "warn" } }],
];

const BUSYBOX = "docker.io/library/strata-bench-busybox:latest";
const DEEP = "docker.io/library/strata-bench-deep:latest";
const BIG = "docker.io/library/strata-bench-big:latest";

/** The three images: busybox, LAYERS layers on busybox, busybox + MB megabytes in 1000 files in one layer. */
async function makeImages(dir: string): Promise<{ busybox: OciImage; deep: OciImage; big: OciImage }> {
  const busybox = await makeBusyboxOciImage(dir, BUSYBOX);
  const deep = await makeManyLayerOciImage(dir, DEEP, LAYERS);
  // Busybox's layer tar with /data/f0..f999 appended (tar -r keeps the busybox entries as they are).
  const layer = path.join(dir, "big-layer.tar");
  fs.copyFileSync(path.join(dir, "busybox.tar"), layer);
  const data = path.join(dir, "big-data");
  fs.mkdirSync(path.join(data, "data"), { recursive: true });
  const chunk = Buffer.alloc(Math.floor((MB * 2 ** 20) / 1000));
  for (let i = 0; i < 1000; i++) {
    chunk.writeUInt32LE(i, 0);
    fs.writeFileSync(path.join(data, "data", `f${i}`), chunk);
  }
  succeeded(await run(["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", data, "-rf", layer, "data"]));
  fs.rmSync(data, { recursive: true });
  const big = await writeOciArchive(path.join(dir, "big-oci.tar"), BIG, [new Uint8Array(fs.readFileSync(layer))]);
  fs.rmSync(layer);
  return { busybox, deep, big };
}

const WORKLOADS = ["ctr run --rm", `import ${LAYERS} layers`, `run --rm on ${LAYERS} layers`, `images rm --sync ${LAYERS} layers`, `import 1 layer of ${MB} MB`] as const;
type Times = Record<(typeof WORKLOADS)[number], number[]>;

async function endToEnd(work: string): Promise<string> {
  log("building images");
  const images = await makeImages(work);
  const envs: Array<{ name: string; env: ContainerdEnv; times: Times }> = [];
  try {
    for (const [name, choice] of SNAPSHOTTERS) {
      const env = await ContainerdEnv.create(choice, { logLevel: "info" });
      envs.push({ name, env, times: Object.fromEntries(WORKLOADS.map((w) => [w, []])) as unknown as Times });
      await env.start();
      succeeded(await env.ctr("images", "import", "--snapshotter", env.snapshotter, images.busybox.archive), () => env.logs());
    }
    let id = 0;
    for (let r = 0; r < ROUNDS; r++) {
      for (let j = 0; j < envs.length; j++) {
        const { name, env, times } = envs[(j + r) % envs.length]!;
        log(`round ${r + 1}/${ROUNDS}: ${name}`);
        const ok = async (p: Promise<{ code: number }>) => succeeded((await p) as never, () => env.logs());
        for (let i = 0; i < RUNS; i++) {
          times["ctr run --rm"].push(await timed(() => ok(env.runContainer(BUSYBOX, `b${id++}`, ["true"]))));
        }
        const long = { timeoutMs: 600_000 };
        times[`import ${LAYERS} layers`].push(await timed(() => ok(env.ctrWith(long, "images", "import", "--snapshotter", env.snapshotter, images.deep.archive))));
        times[`run --rm on ${LAYERS} layers`].push(await timed(() => ok(env.runContainer(DEEP, `d${id++}`, ["cat", "/top.txt"]))));
        times[`images rm --sync ${LAYERS} layers`].push(await timed(() => ok(env.ctrWith(long, "images", "rm", "--sync", DEEP))));
        times[`import 1 layer of ${MB} MB`].push(await timed(() => ok(env.ctrWith(long, "images", "import", "--snapshotter", env.snapshotter, images.big.archive))));
        await ok(env.ctrWith(long, "images", "rm", "--sync", BIG));
      }
    }
  } finally {
    for (const { env } of envs) await env.stop();
  }
  const lines = [
    `\n${ROUNDS} interleaved rounds (${RUNS} \`ctr run --rm … true\` per round), one containerd per snapshotter; median ms (ratio to containerd overlayfs)\n`,
    `| workload | ${envs.map((e) => e.name).join(" | ")} |`,
    `|---|${envs.map(() => "---|").join("")}`,
  ];
  for (const w of WORKLOADS) {
    const ref = median(envs[0]!.times[w]);
    lines.push(`| ${w} | ${envs.map(({ times }) => `${median(times[w]).toFixed(0)} (${(median(times[w]) / ref).toFixed(2)}x)`).join(" | ")} |`);
  }
  return lines.join("\n") + "\n";
}

if (process.getuid?.() !== 0) throw new Error("bench/snapshotter.ts needs root: the snapshotters mount and containerd runs containers");
if (!fs.existsSync(STRATA)) throw new Error(`${STRATA} is missing: run ./compile.sh`);
// Short: the Go program puts unix sockets under it (sun_path holds 107 bytes).
const work = fs.mkdtempSync("/tmp/strata-sbench-");
try {
  const out = [`## strata snapshotter vs containerd overlayfs\n\n${await machine()}\n`];
  if (values.only !== "e2e") out.push("### Per call (Go client, gRPC over a unix socket)", await perCall(work));
  if (values.only !== "calls") out.push("### End to end (containerd 1.6 + ctr)", await endToEnd(work));
  out.push(`- ${loadLine("at the end")}`);
  console.log(out.join("\n"));
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
