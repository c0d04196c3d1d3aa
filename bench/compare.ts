/**
 * Side-by-side benchmark: the same workload on the same dockerd binary with its built-in overlay2
 * and with strata's drivers (compiled binary), one run, ratios against overlay2.
 *
 *   ./compile.sh && node_modules/.bin/bun bench/compare.ts [--rounds 3] [--mb 200] [--drivers overlay,vfs]
 *
 * `--drivers` picks strata's drivers (btrfs needs the temp dir on btrfs, e.g. through
 * `bash scripts/with-btrfs-tmp.sh --quota …`, which puts every subject's data root there).
 *
 * Needs root and docker.io (scripts/install-test-deps.sh). Prints a Markdown table.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { E2EEnv, type StorageChoice, makeBusyboxImageTar, run, succeeded } from "../test/e2e/harness.ts";

const { values } = parseArgs({
  options: { rounds: { type: "string", default: "3" }, mb: { type: "string", default: "200" }, drivers: { type: "string", default: "overlay,vfs" } },
});
const ROUNDS = Number(values.rounds);
const MB = Number(values.mb);

const STORAGES: Array<[string, StorageChoice]> = [
  ["overlay2 (built-in)", { builtin: "overlay2" }],
  ...values.drivers.split(",").map((d): [string, StorageChoice] => [`strata ${d}`, { plugin: { command: [path.resolve("dist/strata")], driver: d, logLevel: "warn" } }]),
];

/** An image tar: busybox plus MB megabytes in 1000 files under /data. */
async function makeImage(dir: string): Promise<string> {
  const base = await makeBusyboxImageTar(dir);
  const rootfs = path.join(dir, "busybox-rootfs");
  fs.mkdirSync(path.join(rootfs, "data"), { recursive: true });
  const per = Math.floor((MB * 1024 * 1024) / 1000);
  const chunk = Buffer.alloc(per);
  for (let i = 0; i < 1000; i++) {
    chunk.writeUInt32LE(i, 0);
    fs.writeFileSync(path.join(rootfs, "data", `f${i}`), chunk);
  }
  const tar = path.join(dir, "big.tar");
  succeeded(await run(["tar", "--numeric-owner", "-C", rootfs, "-cf", tar, "."]));
  void base;
  return tar;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

const WORKLOADS = ["import", "run --rm (x10)", "run --rm --storage-opt size=1G (x10)", "commit 50 MB", "docker diff", "save"] as const;
type Times = Record<(typeof WORKLOADS)[number], number[]>;

async function measure(storage: StorageChoice, imageTar: string): Promise<Times> {
  const env = await E2EEnv.create(storage);
  const times = Object.fromEntries(WORKLOADS.map((w) => [w, [] as number[]])) as unknown as Times;
  try {
    await env.start();
    const docker = async (...args: string[]) => succeeded(await env.dockerd.docker(...args));
    for (let r = 0; r < ROUNDS; r++) {
      times["import"].push(await timed(() => docker("import", imageTar, `bench:${r}`)));
      times["run --rm (x10)"].push(await timed(async () => {
        for (let i = 0; i < 10; i++) await docker("run", "--rm", "--network", "none", `bench:${r}`, "true");
      }));
      // Only a driver that limits sizes takes the option (overlay2 needs xfs with pquota; vfs refuses it).
      const sized = await env.dockerd.docker("run", "--rm", "--network", "none", "--storage-opt", "size=1G", `bench:${r}`, "true");
      if (sized.code === 0) {
        times["run --rm --storage-opt size=1G (x10)"].push(await timed(async () => {
          for (let i = 0; i < 10; i++) await docker("run", "--rm", "--network", "none", "--storage-opt", "size=1G", `bench:${r}`, "true");
        }));
      }
      await docker("run", "--name", `c${r}`, "--network", "none", `bench:${r}`, "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=50 2>/dev/null; rm -r /data/f1");
      times["docker diff"].push(await timed(() => docker("diff", `c${r}`)));
      times["commit 50 MB"].push(await timed(() => docker("commit", `c${r}`, `bench:c${r}`)));
      times["save"].push(await timed(() => docker("save", "-o", path.join(env.root, `save${r}.tar`), `bench:c${r}`)));
      fs.rmSync(path.join(env.root, `save${r}.tar`), { force: true });
      await docker("rm", `c${r}`);
    }
  } finally {
    await env.teardown();
  }
  return times;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const work = fs.mkdtempSync("/tmp/strata-bench-");
try {
  const image = await makeImage(work);
  const results: Array<[string, Times]> = [];
  for (const [name, storage] of STORAGES) {
    console.error(`bench: ${name}…`);
    results.push([name, await measure(storage, image)]);
  }
  const baseline = results[0][1];
  console.log(`\n${ROUNDS} rounds, image of busybox + ${MB} MB in 1000 files; median ms (ratio to overlay2; for the size row, to strata overlay's plain run)\n`);
  console.log(`| workload | ${results.map(([n]) => n).join(" | ")} |`);
  console.log(`|---|${results.map(() => "---").join("|")}|`);
  for (const w of WORKLOADS) {
    // A workload overlay2 cannot run here is compared with strata overlay's plain run instead.
    const ref = baseline[w].length ? median(baseline[w]) : median(results[1][1]["run --rm (x10)"]);
    const cell = (t: Times) => (t[w].length ? `${median(t[w]).toFixed(0)} (${(median(t[w]) / ref).toFixed(2)}x)` : "n/a");
    console.log(`| ${w} | ${results.map(([, t]) => cell(t)).join(" | ")} |`);
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
