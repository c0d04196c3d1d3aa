/**
 * The end-to-end scenario every storage backend runs: what a user does with the real docker CLI on a
 * private dockerd, from `docker import` to a clean shutdown. Each step asserts what the user would
 * see; failures carry the command, its stderr and the daemon's and plugin's logs.
 */
import { afterAll, describe, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  check,
  describeResult,
  E2EEnv,
  makeBusyboxImageTar,
  mentions,
  printed,
  succeeded,
  tarMembers,
  waitFor,
  type DaemonChoice,
  type StorageChoice,
} from "./harness.ts";
import { layerDirs, mountLayerIds, writeBuildContext } from "./scenario-helpers.ts";

/** Options of {@link runScenario}. */
export interface ScenarioOptions {
  /** The describe() label, e.g. "plugin via bun src/main.bun.ts". */
  name: string;
  /** When set, the whole scenario is skipped and this says why. */
  skip?: string;
  /** Which driver dockerd uses (nothing is created until the first step runs). */
  storage: StorageChoice;
  /** How dockerd runs beyond that (default: the host's dockerd 20.10). */
  daemon?: DaemonChoice;
}

const IMG = "e2e-busybox:base";
const COMMITTED = "e2e-busybox:committed";
const LEGACY = "e2e-busybox:legacy";
const BUILDKIT = "e2e-busybox:buildkit";
/** Containers the parallel step runs at once (STRATA_E2E_PARALLEL: fewer in the emulated test VM). */
const PARALLEL = Number(process.env.STRATA_E2E_PARALLEL || 20);

/**
 * Register the scenario as one describe() block whose tests run in order on one dockerd.
 *
 * @example
 * ```ts
 * runScenario({ name: "built-in overlay2", storage: { builtin: "overlay2" } });
 * ```
 */
export function runScenario(opts: ScenarioOptions): void {
  if (opts.skip) {
    // One skipped entry per scenario, not one per step: the reason is the same for all of them.
    describe(opts.name, () => test.skipIf(true)(`the whole scenario (skipped: ${opts.skip})`, () => {}));
    return;
  }
  describe(opts.name, () => {
    let env: E2EEnv;
    let notRun: string | undefined;
    let failed = 0;
    const timings: [string, number][] = [];
    const logs = () => env.logs();
    const docker = (...args: string[]) => env.dockerd.docker(...args);
    const runIn = (image: string, script: string) => docker("run", "--rm", "--network", "none", image, "sh", "-c", script);

    /** One step: refuses to run after a fatal failure, times itself, marks fatal failures. */
    const step = (name: string, fn: () => Promise<void>, timeoutMs = 120_000, fatal = false, skip?: string) =>
      test.skipIf(!!skip)(
        skip ? `${name} (skipped: ${skip})` : name,
        async () => {
          if (notRun) throw new Error(`Not run: ${notRun}`);
          const t0 = performance.now();
          // Marked before and cleared after, so a step bun abandons at its timeout also counts as failed.
          failed++;
          if (fatal) notRun = `"${name}" did not finish`;
          try {
            await fn();
            failed--;
            if (fatal) notRun = undefined;
          } finally {
            timings.push([name, performance.now() - t0]);
          }
        },
        timeoutMs,
      );

    afterAll(async () => {
      if (!env) return;
      if (failed > 0 || process.env.STRATA_E2E_KEEP_LOGS === "1") {
        console.error(`[e2e ${opts.name}] logs kept in ${env.keepLogs()}`);
      }
      const report = await env.teardown().catch((err: Error) => {
        console.error(`[e2e ${opts.name}] teardown failed: ${err.message}`);
        return undefined;
      });
      if (report && (report.killed.length || report.unmounted.length)) {
        console.error(`[e2e ${opts.name}] teardown had to kill ${JSON.stringify(report.killed)} and unmount ${JSON.stringify(report.unmounted)}`);
      }
      const total = timings.reduce((s, [, ms]) => s + ms, 0);
      const rows = timings.map(([n, ms]) => `  ${(ms / 1000).toFixed(2).padStart(7)} s  ${n}`).join("\n");
      console.log(`[e2e ${opts.name}] step wall times (total ${(total / 1000).toFixed(1)} s):\n${rows}`);
    }, 120_000);

    step("starts dockerd on the storage driver", async () => {
      env = await E2EEnv.create(opts.storage, opts.daemon);
      await env.start();
      printed(await docker("info", "--format", "{{.Driver}}"), env.driverName, logs);
    }, 180_000, true);

    let importedTar = "";
    step("imports a busybox image", async () => {
      const tar = await makeBusyboxImageTar(env.root);
      importedTar = tar;
      const out = succeeded(await docker("import", "--change", 'CMD ["/bin/sh"]', tar, IMG), logs);
      check(/^sha256:[0-9a-f]{64}$/.test(out.trim()), "docker import printed no image id", out, logs);
      printed(await docker("images", "--format", "{{.Repository}}:{{.Tag}}", IMG), IMG, logs);
    }, 120_000, true);

    step("runs a container that writes a file and reads it back", async () => {
      printed(await runIn(IMG, "echo hello-strata > /data.txt && cat /data.txt && head -1 /etc/passwd"), "hello-strata\nroot:x:0:0:root:/root:/bin/sh", logs);
    });

    const strataDriver = "plugin" in opts.storage ? opts.storage.plugin.driver : "managed" in opts.storage ? opts.storage.managed.driver : undefined;
    step("saves the imported layer byte for byte and keeps no tar-split for it (exact diffs)", async () => {
      const file = path.join(env.root, "exact.tar");
      succeeded(await docker("save", "-o", file, IMG), logs);
      const out = path.join(env.root, "exact");
      fs.mkdirSync(out);
      const untar = spawnSync("tar", ["-xf", file, "-C", out], { encoding: "utf8" });
      check(untar.status === 0, "cannot unpack the saved image", untar.stderr, logs);
      const layers = (JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8")) as Array<{ Layers: string[] }>)[0].Layers;
      const sha = (p: string) => createHash("sha256").update(fs.readFileSync(p)).digest("hex");
      check(layers.length === 1 && sha(path.join(out, layers[0])) === sha(importedTar), "the saved layer should be the imported tar, byte for byte", layers.join(", "), logs);
      const splits = (fs.readdirSync(path.join(env.dockerd.dataRoot, "image"), { recursive: true }) as string[]).filter((p) => p.endsWith("tar-split.json.gz"));
      check(splits.length === 0, "dockerd should keep no tar-split for a driver that reproduces exact diffs", splits.join("\n"), logs);
    }, 120_000, false, strataDriver === "erofs" ? undefined : "only drivers with exact diffs (erofs)");

    step("limits a container's size with --storage-opt size (ENOSPC past it), or refuses the option", async () => {
      const res = await docker("run", "--rm", "--network", "none", "--storage-opt", "size=32M", IMG, "sh", "-c",
        "dd if=/dev/zero of=/fill bs=1M count=64 2>&1; echo dd-exit=$?; rm -f /fill; dd if=/dev/zero of=/small bs=1M count=4 2>/dev/null && echo small-ok");
      if (strataDriver === "overlay") {
        const out = succeeded(res, logs);
        check(/No space left on device/.test(out) && /dd-exit=1/.test(out) && /small-ok/.test(out),
          "a 64 MiB write in a 32 MiB container should fail with ENOSPC, and a write after freeing room succeed", out, logs);
      } else if (strataDriver === "btrfs") {
        // A qgroup limit (the e2e stage's btrfs has quotas on): past it writes fail with EDQUOT.
        const out = succeeded(res, logs);
        check(/Disk quota exceeded/.test(out) && /dd-exit=1/.test(out) && /small-ok/.test(out),
          "a 64 MiB write in a 32 MiB btrfs container should fail with EDQUOT, and a write after freeing room succeed", out, logs);
      } else {
        check(res.code !== 0 && /does not support the size option/.test(res.stderr), "vfs should refuse --storage-opt size", res.stderr, logs);
      }
    }, 120_000, false, strataDriver === undefined ? "built-in drivers answer --storage-opt size by their own rules" : undefined);

    step("lists a container's changes with docker diff", async () => {
      succeeded(await docker("run", "--name", "c-diff", "--network", "none", IMG, "sh", "-c",
        "echo new > /newfile && rm /bin/cat && mkdir /d && echo f > /d/f"), logs);
      const res = await docker("diff", "c-diff");
      const lines = succeeded(res, logs).trim().split("\n").sort();
      check(
        JSON.stringify(lines) === JSON.stringify(["A /d", "A /d/f", "A /newfile", "C /bin", "D /bin/cat"]),
        "docker diff c-diff: wanted A /d, A /d/f, A /newfile, C /bin, D /bin/cat",
        res.stdout, logs,
      );
    });

    step("commits a container and runs the new image", async () => {
      succeeded(await docker("commit", "c-diff", COMMITTED), logs);
      printed(await runIn(COMMITTED, "cat /newfile /d/f; test -e /bin/cat && echo cat-present || echo cat-absent"), "new\nf\ncat-absent", logs);
    });

    step("shows the driver in docker inspect (GraphDriver.Name and Data)", async () => {
      for (const [kind, ref] of [["container", "c-diff"], ["image", COMMITTED]]) {
        const out = succeeded(await docker(kind!, "inspect", "--format", "{{json .GraphDriver}}", ref!), logs);
        const gd = JSON.parse(out) as { Name: string; Data: unknown };
        check(gd.Name === env.driverName, `docker ${kind} inspect ${ref}: GraphDriver.Name is "${gd.Name}", not "${env.driverName}"`, out, logs);
        check(gd.Data === null || (typeof gd.Data === "object" && !Array.isArray(gd.Data)), `GraphDriver.Data of ${ref} is not an object`, out, logs);
      }
    });

    step("exports a container's filesystem", async () => {
      const file = path.join(env.root, "export.tar");
      succeeded(await docker("export", "-o", file, "c-diff"), logs);
      const members = await tarMembers(file);
      for (const want of ["newfile", "d/f", "bin/busybox", "bin/sh", "etc/passwd"]) {
        check(members.includes(want), `docker export lacks /${want}`, members.slice(0, 40).join("\n"), logs);
      }
      check(!members.includes("bin/cat"), "docker export still has /bin/cat, which the container deleted", "", logs);
    });

    step("copies files out of a stopped container", async () => {
      const out = path.join(env.root, "cp-out");
      fs.mkdirSync(out);
      succeeded(await docker("cp", "c-diff:/newfile", path.join(out, "newfile")), logs);
      succeeded(await docker("cp", "c-diff:/d", path.join(out, "d")), logs);
      for (const [file, want] of [["newfile", "new\n"], ["d/f", "f\n"]] as const) {
        const got = fs.readFileSync(path.join(out, file), "utf8");
        check(got === want, `docker cp gave /${file} as ${JSON.stringify(got)}, not ${JSON.stringify(want)}`, "", logs);
      }
    });

    step("saves, removes and loads an image, then runs it", async () => {
      const file = path.join(env.root, "saved.tar");
      succeeded(await docker("save", "-o", file, COMMITTED), logs);
      mentions(await docker("rmi", COMMITTED), [`Untagged: ${COMMITTED}`, "Deleted: sha256:"], logs);
      check((await docker("image", "inspect", COMMITTED)).code !== 0, `${COMMITTED} still exists after docker rmi`, "", logs);
      mentions(await docker("load", "-i", file), [`Loaded image: ${COMMITTED}`], logs);
      printed(await runIn(COMMITTED, "cat /newfile; test -e /bin/cat && echo cat-present || echo cat-absent"), "new\ncat-absent", logs);
    });

    step("builds an image with the legacy builder", async () => {
      const ctx = writeBuildContext(env.root, "legacy", IMG);
      const res = await env.dockerd.dockerWith({ extraEnv: { DOCKER_BUILDKIT: "0" } }, "build", "--network", "none", "-t", LEGACY, ctx);
      mentions(res, [`Successfully tagged ${LEGACY}`], logs);
      printed(await runIn(LEGACY, "cat /built.txt /hello.txt; test -e /bin/ls && echo ls-present || echo ls-absent"), "legacy\nhello from legacy\nls-absent", logs);
    }, 180_000);

    step("builds an image with BuildKit", async () => {
      const ctx = writeBuildContext(env.root, "buildkit", IMG);
      const res = await env.dockerd.dockerWith({ extraEnv: { DOCKER_BUILDKIT: "1" } }, "build", "--progress", "plain", "--network", "none", "-t", BUILDKIT, ctx);
      // BuildKit puts the step's time before "done" when it took long enough to show one.
      mentions(res, [new RegExp(`naming to docker\\.io/library/${BUILDKIT.replaceAll(".", "\\.")}( [0-9.]+s)? done`)], logs);
      printed(await runIn(BUILDKIT, "cat /built.txt /hello.txt; test -e /bin/ls && echo ls-present || echo ls-absent"), "buildkit\nhello from buildkit\nls-absent", logs);
    }, 180_000);

    step(`runs ${PARALLEL} containers in parallel`, async () => {
      const results = await Promise.all(
        Array.from({ length: PARALLEL }, (_, i) =>
          env.dockerd.dockerWith({ timeoutMs: 240_000 }, "run", "--rm", "--network", "none", "--label", "e2e=parallel", IMG, "sh", "-c", `echo run-${i} > /tmp/out && cat /tmp/out`),
        ),
      );
      results.forEach((res, i) => printed(res, `run-${i}`, logs));
      printed(await docker("ps", "-aq", "--filter", "label=e2e=parallel"), "", logs);
    }, 300_000);

    step("keeps images and containers across a dockerd restart, and restarts a running container on its layer", async () => {
      succeeded(await docker("run", "-d", "--name", "c-restart", "--restart", "always", "--network", "none", IMG, "sh", "-c",
        // As PID 1 the shell ignores SIGTERM unless it traps it: without the trap the daemon waits 10 s on shutdown.
        "echo before >> /runs; trap 'exit 0' TERM; sleep 600 & wait"), logs);
      // The first run has written its line before the restart (a slow machine may not have started the shell yet).
      let lastExec = "";
      const runs = async () => {
        const res = await docker("exec", "c-restart", "cat", "/runs");
        lastExec = describeResult(res);
        return res.stdout;
      };
      await waitFor(async () => (await runs()) === "before\n", {
        timeoutMs: 60_000, message: "c-restart did not write /runs", context: () => `${lastExec}\n\n${logs()}`,
      });
      const exit = await env.dockerd.restart();
      check(!exit.killed && exit.code === 0, `dockerd did not stop cleanly on SIGTERM: ${JSON.stringify(exit)}`, "", logs);
      const images = succeeded(await docker("images", "--format", "{{.Repository}}:{{.Tag}}"), logs).trim().split("\n").sort();
      const want = [IMG, BUILDKIT, COMMITTED, LEGACY].sort();
      check(JSON.stringify(images) === JSON.stringify(want), `docker images after the restart: wanted ${want.join(", ")}`, images.join("\n"), logs);
      printed(await runIn(COMMITTED, "cat /newfile"), "new", logs);
      mentions(await docker("diff", "c-diff"), ["A /newfile", "D /bin/cat"], logs);
      // The daemon stopped the container on shutdown and starts it again on the same layer.
      await waitFor(async () => (await docker("inspect", "--format", "{{.State.Running}}", "c-restart")).stdout.trim() === "true" && (await runs()) === "before\nbefore\n", {
        timeoutMs: 60_000, message: "c-restart (--restart always) did not run again after the dockerd restart", context: () => `${lastExec}\n\n${logs()}`,
      });
      printed(await docker("exec", "c-restart", "sh", "-c", "cat /runs; echo after > /after; cat /after"), "before\nbefore\nafter", logs);
      succeeded(await docker("rm", "-f", "c-restart"), logs);
    }, 180_000);

    step(
      "survives a plugin SIGKILL and restart while dockerd keeps running",
      async () => {
        // On overlay the container is size-limited too: its own filesystem must be adopted, not unmounted.
        const sized = strataDriver === "overlay" ? ["--storage-opt", "size=64M"] : [];
        succeeded(await docker("run", "-d", "--name", "c-long", ...sized, "--network", "none", IMG, "sleep", "600"), logs);
        // A v1 plugin is started again by the harness; dockerd restarts a managed one by itself.
        await env.crashPlugin();
        // The daemon never re-sends Init: this only works if the plugin restored its own state.
        printed(await runIn(COMMITTED, "cat /newfile"), "new", logs);
        // The container kept running on its mount through the crash, and still writes to its layer.
        printed(await docker("exec", "c-long", "sh", "-c", "echo alive > /alive && cat /alive"), "alive", logs);
        mentions(await docker("diff", "c-diff"), ["A /newfile", "D /bin/cat"], logs);
        succeeded(await docker("stop", "-t", "1", "c-long"), logs);
        succeeded(await docker("rm", "c-long"), logs);
      },
      180_000,
      false,
      "builtin" in opts.storage ? "a built-in driver has no plugin process to kill" : undefined,
    );

    step("docker rm removes the container's layer directories", async () => {
      const full = succeeded(await docker("inspect", "--format", "{{.Id}}", "c-diff"), logs).trim();
      const ids = mountLayerIds(env.dockerd.dataRoot, env.driverName, full);
      const before = layerDirs(env.layerHome);
      for (const id of ids) check(before.some((d) => path.basename(d) === id), `Layer ${id} of c-diff is not under ${env.layerHome}`, before.join("\n"), logs);
      succeeded(await docker("rm", "c-diff"), logs);
      const after = layerDirs(env.layerHome).filter((d) => ids.includes(path.basename(d)));
      check(after.length === 0, "docker rm c-diff left its layer directories behind", after.join("\n"), logs);
    });

    step("removing every container and image leaves no layer directories", async () => {
      check(layerDirs(env.layerHome).length > 0, `No layer directories found under ${env.layerHome}: the check below would prove nothing`, "", logs);
      const containers = succeeded(await docker("ps", "-aq"), logs).trim().split("\n").filter(Boolean);
      if (containers.length) succeeded(await docker("rm", "-f", ...containers), logs);
      // By tag, the way a user cleans up: untagged parents (legacy build steps) go with their child.
      const tags = succeeded(await docker("images", "--format", "{{.Repository}}:{{.Tag}}"), logs).trim().split("\n").filter(Boolean);
      if (tags.length) succeeded(await docker("rmi", ...tags), logs);
      succeeded(await docker("builder", "prune", "-af"), logs);
      printed(await docker("images", "-aq"), "", logs);
      const left = layerDirs(env.layerHome);
      check(left.length === 0, `Layer directories left under ${env.layerHome} after removing everything`, left.join("\n"), logs);
    }, 180_000);

    step("stops cleanly and leaves no mounts behind", async () => {
      const exit = await env.dockerd.stop();
      check(!exit.killed && exit.code === 0, `dockerd did not stop cleanly on SIGTERM: ${JSON.stringify(exit)}`, "", logs);
      if (env.plugin) {
        const pexit = await env.plugin.stop();
        check(!pexit.forced && pexit.code === 0, `The plugin did not exit 0 on SIGTERM: ${JSON.stringify(pexit)}`, "", logs);
      }
      if (env.managed) {
        // dockerd stops its managed plugins on the way out (SIGTERM, SIGKILL after 10 s).
        check(env.managed.pid() === undefined, "The managed plugin's process outlived dockerd", "", logs);
        const said = env.managed.outputOfLastRun(env.dockerd.logFile);
        check(said.some((l) => / info stopped\b/.test(l)), "The managed plugin did not log a clean stop on SIGTERM", said.slice(-20).join("\n"), logs);
      }
      const mounts = env.mounts();
      check(mounts.length === 0, `Mounts left under ${env.root} after dockerd and the plugin stopped`, mounts.join("\n"), logs);
    }, 120_000);
  });
}
