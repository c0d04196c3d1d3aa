/**
 * Power cuts: strata (the compiled binary) serves on a virtual disk in a VM, a load acknowledges
 * Create/ApplyDiff/CreateReadWrite/Remove calls, the host SIGKILLs qemu at a random moment (the
 * guest's page cache is lost, as in a power cut), boots again on the same disk and checks that every
 * layer strata acknowledged is intact and nothing half-made is visible (test/vm/power-cut-guest.ts).
 *
 * Opt-in (it boots 2 machines a round): STRATA_VM=1. Settings: STRATA_POWER_CUT_ROUNDS (8),
 * STRATA_POWER_CUT_SEED (1; round i uses seed+i), STRATA_POWER_CUT_MODES (front:driver pairs the
 * rounds cycle through; graphdriver:overlay,snapshotter:overlay,graphdriver:vfs), STRATA_POWER_CUT_MAX_DELAY_MS (8000: the cut comes 0.3 s to this long after the load
 * starts), STRATA_VM_KERNEL (bookworm).
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type Release, RELEASES, accel, bootVm, jobPrelude, kernelFor, makeDisk, vmUnavailable } from "./vm.ts";
import { expectedFrom, prng } from "./power-cut-model.ts";

const asked = process.env.STRATA_VM === "1";
const unavailable = vmUnavailable();
const rounds = Number(process.env.STRATA_POWER_CUT_ROUNDS ?? 8);
const seed = Number(process.env.STRATA_POWER_CUT_SEED ?? 1);
/** front:driver pairs the rounds cycle through. */
const modes = (process.env.STRATA_POWER_CUT_MODES ?? "graphdriver:overlay,snapshotter:overlay,graphdriver:vfs").split(",").map((m) => {
  const [front, driver] = m.split(":");
  return { front, driver };
});
const maxDelayMs = Number(process.env.STRATA_POWER_CUT_MAX_DELAY_MS ?? 8000);
const release = (process.env.STRATA_VM_KERNEL ?? "bookworm") as Release;
const binary = path.resolve(import.meta.dir, "../../dist/strata");

const skip = !asked
  ? "power-cut rounds boot VMs: set STRATA_VM=1 (scripts/test.sh's vm-power-cut stage)"
  : unavailable ?? (fs.existsSync(binary) ? undefined : "dist/strata is not built (./compile.sh)");
if (asked && skip && process.env.CI === "true") {
  test("power cuts can run on this host", () => {
    throw new Error(`STRATA_VM=1 and CI=true ask for the power-cut test, but this host cannot run it: ${skip}`);
  });
} else if (skip) {
  // One skip with its reason, not one per round.
  test.skip(`power cuts (skipped: ${skip})`, () => {});
}

interface RoundResult {
  round: number;
  driver: string;
  front: string;
  acknowledged: number;
  layers: number;
  failures: string[];
}
const results: RoundResult[] = [];

afterAll(() => {
  if (results.length === 0) return;
  const bad = results.filter((r) => r.failures.length > 0);
  const acks = results.reduce((s, r) => s + r.acknowledged, 0);
  const layers = results.reduce((s, r) => s + r.layers, 0);
  const failures = results.reduce((s, r) => s + r.failures.length, 0);
  console.log(
    `power-cut: ${results.length} rounds on ${RELEASES[release]}'s kernel (${accel().kind}), seed ${seed}: ${results.length - bad.length} clean, ${bad.length} with failures; ` +
      `${acks} acknowledged calls, ${layers} layers expected, ${failures} problems found`,
  );
});

// The rounds exist only when they run: the skip above stands for all of them, with its reason.
if (skip === undefined) describe("power cut", () => {
  const kernel = kernelFor(release);
  for (let round = 1; round <= rounds; round++) {
    const { front, driver } = modes[(round - 1) % modes.length];
    const roundSeed = seed + round;
    test(`round ${round}: ${front} ${driver}, seed ${roundSeed}: every acknowledged layer survives the cut`, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "strata-power-cut-"));
      try {
        const disk = path.join(dir, "store.img");
        const logDisk = path.join(dir, "log.img");
        makeDisk(disk, "2G");
        fs.writeFileSync(logDisk, Buffer.alloc(4 << 20));
        const delay = 300 + Math.floor(prng(roundSeed)() * (maxDelayMs - 300));
        let ready = 0;
        let cutAt = 0;
        const load = bootVm({
          kernelDir: kernel.dir,
          disks: [disk, logDisk],
          job: `${jobPrelude()}node_modules/.bin/bun test/vm/power-cut-guest.ts load --front ${front} --driver ${driver} --seed ${roundSeed} --log /dev/vdb\n`,
          timeoutMs: 180_000,
          onLine: (line, vm) => {
            if (line.startsWith("PCERROR") || line.startsWith("power-cut-guest:") || line.startsWith("strata-vm:")) console.log(`  load: ${line}`);
            if (line === "PC READY" && !ready) {
              ready = Date.now();
              setTimeout(() => {
                cutAt = Date.now();
                vm.kill();
              }, delay);
            }
          },
        });
        const loaded = await load.done;
        if (!loaded.killed || !ready) {
          throw new Error(`the load ended before the cut (exit ${loaded.exitCode}):\n${loaded.lines.slice(-30).join("\n")}`);
        }
        const log = fs.readFileSync(logDisk).toString("latin1").replace(/\0+$/, "").replace(/\0/g, "");
        const exp = expectedFrom(log.split("\n"));
        const check = bootVm({
          kernelDir: kernel.dir,
          disks: [disk],
          files: { "acks.txt": log },
          job: `${jobPrelude()}node_modules/.bin/bun test/vm/power-cut-guest.ts check --front ${front} --driver ${driver} --acks /run/vm/acks.txt\n`,
          timeoutMs: 240_000,
        });
        const checked = await check.done;
        const failures = checked.lines.filter((l) => l.startsWith("PCCHECK fail ")).map((l) => l.slice("PCCHECK fail ".length));
        if (!checked.lines.some((l) => l.startsWith("PCCHECK done "))) {
          const why = checked.lines.find((l) => l.startsWith("PCERROR")) ?? checked.lines.at(-1);
          failures.push(`the check did not finish (exit ${checked.exitCode}): ${why}`);
        }
        const flight = exp.inFlight ? `${exp.inFlight.op} ${exp.inFlight.id} in flight` : "no call in flight";
        console.log(
          `power-cut round ${round}/${rounds} (${front} ${driver}, seed ${roundSeed}): cut ${((cutAt - ready) / 1000).toFixed(1)} s into the load, ` +
            `${exp.acknowledged} acknowledged calls, ${flight}; ${exp.layers.size} layers expected: ${failures.length === 0 ? "all intact" : `${failures.length} problems`}`,
        );
        for (const f of failures) console.log(`  ${f}`);
        results.push({ round, driver, front, acknowledged: exp.acknowledged, layers: exp.layers.size, failures });
        expect(failures).toEqual([]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }, 600_000);
  }
});
