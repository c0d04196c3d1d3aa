/**
 * Run a command inside the test machine on a stock Debian kernel, in this repository, as root, with
 * a fresh ext4 disk as its TMPDIR (/run/scratch); prints the console and exits with the command's status.
 *
 *   bun test/vm/run.ts --kernel bookworm|trixie [--disk-size 6G] [--timeout-s 900] [--cpus 2] -- COMMAND...
 *
 * Where the machine cannot run, it says why and exits 1 under CI=true, 0 otherwise (a skip).
 * @example
 * // bun test/vm/run.ts --kernel bookworm -- node_modules/.bin/bun test test/overlay.test.ts
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { RELEASES, type Release, accel, bootVm, jobPrelude, kernelFor, makeDisk, shellQuote, vmUnavailable } from "./vm.ts";

function _usage(msg: string): never {
  console.error(`vm: ${msg}\nusage: bun test/vm/run.ts --kernel bookworm|trixie [--disk-size 6G] [--timeout-s 900] [--cpus 2] -- COMMAND...`);
  process.exit(2);
}

const argv = process.argv.slice(2);
const sep = argv.indexOf("--");
if (sep < 0 || sep === argv.length - 1) _usage("no command after --");
const flags = new Map<string, string>();
for (let i = 0; i < sep; i += 2) {
  if (!argv[i].startsWith("--") || i + 1 >= sep) _usage(`bad argument ${argv[i]}`);
  flags.set(argv[i].slice(2), argv[i + 1]);
}
const release = flags.get("kernel") as Release;
if (!(release in RELEASES)) _usage(`--kernel must be one of ${Object.keys(RELEASES).join(", ")}`);
const command = argv.slice(sep + 1);

const unavailable = vmUnavailable();
if (unavailable) {
  const ci = process.env.CI === "true";
  console.log(`vm: cannot run ${RELEASES[release]}'s kernel here: ${unavailable}${ci ? " (CI=true: this stage fails)" : " (skipped)"}`);
  process.exit(ci ? 1 : 0);
}

const kernel = kernelFor(release);
const how = accel();
console.log(`vm: ${RELEASES[release]} ${kernel.version}, ${how.kind}${how.reason ? ` (${how.reason})` : ""}: ${command.join(" ")}`);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "strata-vm-run-"));
const disk = path.join(dir, "disk.img");
try {
  makeDisk(disk, flags.get("disk-size") ?? "6G");
  // CI and STRATA_* settings reach the guest's tests as they reach the host's.
  const passed = Object.fromEntries(Object.entries(process.env).filter(([k]) => k === "CI" || k.startsWith("STRATA_")) as [string, string][]);
  const vm = bootVm({
    kernelDir: kernel.dir,
    disks: [disk],
    job: `${jobPrelude(passed)}${command.map(shellQuote).join(" ")}\n`,
    timeoutMs: Number(flags.get("timeout-s") ?? 900) * 1000,
    cpus: Number(flags.get("cpus") ?? 2),
    onLine: (line) => console.log(line),
  });
  const result = await vm.done;
  console.log(`vm: ${RELEASES[release]} ${kernel.version}: exit ${result.exitCode ?? "none (the guest did not finish)"} after ${(result.ms / 1000).toFixed(1)} s`);
  process.exitCode = result.exitCode === 0 ? 0 : 1;
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
