/**
 * Side-by-side benchmark: the same workloads on the same dockerd binary with its built-in overlay2
 * and with strata's drivers (compiled binary). Every subject's dockerd runs for the whole run and
 * the rounds are interleaved (round 1 on every subject, then round 2…), so a machine that slows
 * down mid-run slows every subject alike; medians and ratios against overlay2 are printed.
 *
 *   ./compile.sh && node_modules/.bin/bun bench/compare.ts [--rounds 3] [--drivers overlay,vfs]
 *     [--files 30000] [--big-mb 256] [--containers 50]
 *
 * `--drivers` picks strata's drivers (btrfs needs the temp dir on btrfs, e.g. through
 * `bash scripts/with-btrfs-tmp.sh --quota …`, which puts every subject's data root there).
 * Needs root and docker.io (scripts/install-test-deps.sh). Prints a Markdown table.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { E2EEnv, type StorageChoice, makeBusyboxImageTar, run, succeeded } from "../test/e2e/harness.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    drivers: { type: "string", default: "overlay,vfs" },
    files: { type: "string", default: "30000" },
    "big-mb": { type: "string", default: "256" },
    containers: { type: "string", default: "50" },
  },
});
const ROUNDS = Number(values.rounds);
const FILES = Number(values.files);
const BIG_MB = Number(values["big-mb"]);
const CONTAINERS = Number(values.containers);

const STORAGES: Array<[string, StorageChoice]> = [
  ["overlay2 (built-in)", { builtin: "overlay2" }],
  ...values.drivers.split(",").map((d): [string, StorageChoice] => [`strata ${d}`, { plugin: { command: [path.resolve("dist/strata")], driver: d, logLevel: "warn" } }]),
];

const must = async (argv: string[]) => succeeded(await run(argv, { timeoutMs: 30 * 60_000 }));
const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");

/** Pack `dir` as a layer tar with fixed owners and times (the same bytes every run). */
async function packLayer(dir: string, tar: string): Promise<string> {
  await must(["tar", "--numeric-owner", "--sort=name", "--mtime=2024-01-01 00:00:00Z", "-C", dir, "-cf", tar, "."]);
  return tar;
}

/** A `docker save`-format archive of the layer tars (bottom first), tagged `tag`. */
async function savedImage(work: string, name: string, tag: string, layers: string[]): Promise<string> {
  const dir = path.join(work, `${name}-image`);
  fs.mkdirSync(dir);
  const diffIds = layers.map(sha256);
  const entries = layers.map((layer, i) => {
    fs.mkdirSync(path.join(dir, diffIds[i]));
    fs.renameSync(layer, path.join(dir, diffIds[i], "layer.tar"));
    return `${diffIds[i]}/layer.tar`;
  });
  const config = JSON.stringify({
    architecture: "amd64", os: "linux", created: "2024-01-01T00:00:00Z",
    config: { Cmd: ["sh"], Env: ["PATH=/bin"] },
    rootfs: { type: "layers", diff_ids: diffIds.map((d) => `sha256:${d}`) },
  });
  const configName = `${createHash("sha256").update(config).digest("hex")}.json`;
  fs.writeFileSync(path.join(dir, configName), config);
  fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: entries }]));
  const out = path.join(work, `${name}.tar`);
  await must(["tar", "-C", dir, "-cf", out, "."]);
  fs.rmSync(dir, { recursive: true });
  return out;
}

/** Files of 1-16 KiB (sizes from a fixed seed) under `dir/sub`, with a hardlink every 100th. */
function smallFiles(dir: string, sub: string, n: number, seed: number): void {
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const buf = Buffer.alloc(16 * 1024, `${sub} `);
  const dirs = Math.ceil(n / 100);
  for (let d = 0; d < dirs; d++) fs.mkdirSync(path.join(dir, sub, `d${d}`), { recursive: true });
  for (let i = 0; i < n; i++) {
    buf.writeUInt32LE(i, 0);
    const file = path.join(dir, sub, `d${i % dirs}`, `f${i}`);
    fs.writeFileSync(file, buf.subarray(0, 1024 + Math.floor(rand() * 15 * 1024)));
    if (i % 100 === 0) fs.linkSync(file, path.join(dir, sub, `d${i % dirs}`, `h${i}`));
  }
}

interface Images {
  /** busybox plus FILES small files in 3 layers (the upper two with whiteouts and an opaque dir). */
  small: string;
  /** busybox plus 4 files of BIG_MB MiB. */
  big: string;
  /** busybox plus 19 one-file layers. */
  deep: string;
}

async function makeImages(work: string): Promise<Images> {
  await makeBusyboxImageTar(work);
  const rootfs = path.join(work, "busybox-rootfs");
  const third = Math.floor(FILES / 3);
  const layer = async (name: string, fill: (dir: string) => void) => {
    const dir = path.join(work, name);
    fs.mkdirSync(dir);
    fill(dir);
    const tar = await packLayer(dir, path.join(work, `${name}.tar`));
    fs.rmSync(dir, { recursive: true });
    return tar;
  };
  const busybox = () => packLayer(rootfs, path.join(work, `busybox-${Math.random().toString(36).slice(2)}.tar`));
  const small = await savedImage(work, "small", "bench:small", [
    await layer("s1", (d) => (fs.cpSync(rootfs, d, { recursive: true, verbatimSymlinks: true }), smallFiles(d, "data1", third, 1))),
    await layer("s2", (d) => {
      smallFiles(d, "data2", third, 2);
      // Whiteouts of 1 in 20 of the first layer's files, and an opaque directory.
      for (let i = 0; i < third; i += 20) {
        fs.mkdirSync(path.join(d, "data1", `d${i % Math.ceil(third / 100)}`), { recursive: true });
        fs.writeFileSync(path.join(d, "data1", `d${i % Math.ceil(third / 100)}`, `.wh.f${i}`), "");
      }
      fs.mkdirSync(path.join(d, "data1", "d1"), { recursive: true });
      fs.writeFileSync(path.join(d, "data1", "d1", ".wh..wh..opq"), "");
    }),
    await layer("s3", (d) => smallFiles(d, "data3", FILES - 2 * third, 3)),
  ]);
  const big = await savedImage(work, "big", "bench:big", [
    await busybox(),
    await layer("b1", (d) => {
      const block = Buffer.alloc(1024 * 1024);
      for (let f = 0; f < 4; f++) {
        const fd = fs.openSync(path.join(d, `big${f}`), "w");
        for (let m = 0; m < BIG_MB; m++) (block.writeUInt32LE(f * BIG_MB + m, 0), fs.writeSync(fd, block));
        fs.closeSync(fd);
      }
    }),
  ]);
  const deepLayers = [await busybox()];
  for (let i = 1; i < 20; i++) deepLayers.push(await layer(`l${i}`, (d) => fs.writeFileSync(path.join(d, `layer${i}`), `${i}\n`)));
  const deep = await savedImage(work, "deep", "bench:deep", deepLayers);
  return { small, big, deep };
}

const WORKLOADS = [
  `docker load, 3 layers, ${FILES} files of 1-16 KiB`,
  `docker load, 4 × ${BIG_MB} MiB files`,
  "docker commit, 5,000 new 4 KiB files, 1,000 deleted",
  "docker diff (same container)",
  `docker system df -v, ${CONTAINERS} containers`,
  "docker run --rm on a 20-layer image (×5)",
  "docker save (the small-file image)",
] as const;
type Workload = (typeof WORKLOADS)[number];

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** One round of every workload on one daemon. */
async function round(env: E2EEnv, images: Images, r: number, times: Map<Workload, number[]>): Promise<void> {
  const docker = async (...args: string[]) => succeeded(await env.dockerd.dockerWith({ timeoutMs: 30 * 60_000 }, ...args));
  const t = async (w: Workload, fn: () => Promise<unknown>) => times.get(w)!.push(await timed(fn));
  await t(WORKLOADS[0], () => docker("load", "-q", "-i", images.small));
  await t(WORKLOADS[1], () => docker("load", "-q", "-i", images.big));
  await docker("run", "--name", `c${r}`, "--network", "none", "bench:small", "sh", "-c",
    // 5,000 new files of 4 KiB; 1,000 of the image's files deleted.
    "mkdir /new && i=0; while [ $i -lt 5000 ]; do head -c 4096 /bin/busybox > /new/f$i; i=$((i+1)); done; rm /data3/d*/f1?? /data3/d*/f2??");
  await t(WORKLOADS[2], () => docker("commit", `c${r}`, `bench:c${r}`));
  await t(WORKLOADS[3], () => docker("diff", `c${r}`));
  await t(WORKLOADS[4], () => docker("system", "df", "-v"));
  await t(WORKLOADS[5], async () => {
    for (let i = 0; i < 5; i++) await docker("run", "--rm", "--network", "none", "bench:deep", "cat", "/layer19");
  });
  const saved = path.join(env.root, "save.tar");
  await t(WORKLOADS[6], () => docker("save", "-o", saved, "bench:small"));
  fs.rmSync(saved, { force: true });
  // Back to the state the round started from.
  await docker("rm", `c${r}`);
  await docker("rmi", `bench:c${r}`, "bench:small", "bench:big");
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const work = fs.mkdtempSync("/var/tmp/strata-bench-");
const envs: Array<{ name: string; env: E2EEnv; times: Map<Workload, number[]> }> = [];
try {
  console.error("bench: building the images…");
  const images = await makeImages(work);
  for (const [name, storage] of STORAGES) {
    const env = await E2EEnv.create(storage);
    envs.push({ name, env, times: new Map(WORKLOADS.map((w) => [w, []])) });
    await env.start();
    const docker = async (...args: string[]) => succeeded(await env.dockerd.docker(...args));
    await docker("load", "-q", "-i", images.deep);
    // The containers `docker system df -v` sizes: each has written a file.
    for (let i = 0; i < CONTAINERS; i++) await docker("run", "--name", `df${i}`, "--network", "none", "bench:deep", "sh", "-c", `echo ${i} > /f`);
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const { name, env, times } of envs) {
      console.error(`bench: round ${r + 1}/${ROUNDS}: ${name}…`);
      await round(env, images, r, times);
    }
  }
  const base = envs[0].times;
  console.log(`\n${ROUNDS} interleaved rounds on one dockerd 20.10 per subject; median ms (ratio to overlay2)\n`);
  console.log(`| workload | ${envs.map((e) => e.name).join(" | ")} |`);
  console.log(`|---|${envs.map(() => "---").join("|")}|`);
  for (const w of WORKLOADS) {
    const ref = median(base.get(w)!);
    console.log(`| ${w} | ${envs.map((e) => `${median(e.times.get(w)!).toFixed(0)} (${(median(e.times.get(w)!) / ref).toFixed(2)}x)`).join(" | ")} |`);
  }
} finally {
  for (const { env } of envs) await env.teardown().catch((err) => console.error(`bench: teardown: ${err}`));
  fs.rmSync(work, { recursive: true, force: true });
}
