/**
 * dockerd 26.1 + containerd 1.7 (Debian 13, from `scripts/trixie-chroot.sh`) with the containerd image
 * store (`"features": {"containerd-snapshotter": true}`) and `--storage-driver strata`: import, run,
 * diff, commit, export, build, rm, rmi, daemon restart, snapshotter restart, and an empty store at the end.
 *
 * STRATA_E2E=1                 run at all (root, the chroot's marker, dist/strata)
 * STRATA_TRIXIE_ROOT=DIR       the chroot (default /var/cache/strata/trixie)
 * STRATA_E2E_DRIVER=overlay    strata's --driver (default overlay)
 * STRATA_E2E_KEEP_LOGS=1       keep the logs in /tmp/strata-e2e-*-logs even on success
 */
import { afterAll, describe, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeBusyboxImageTar } from "./busybox-image.ts";
import { check, describeResult, mentions, printed, succeeded, waitFor } from "./command.ts";
import { parseSnapshots, strataLayerDirs } from "./containerd.ts";
import { Dockerd26Env, dockerd26UnavailableReason, MOBY_NAMESPACE } from "./dockerd26.ts";
import { skipUnlessAsked } from "./gate.ts";
import { tarMembers } from "./host.ts";

const skip = skipUnlessAsked(dockerd26UnavailableReason(), "the dockerd 26 end-to-end tests");
const driver = process.env.STRATA_E2E_DRIVER || "overlay";
const BASE = "e2e-busybox:base";
const COMMITTED = "e2e-busybox:committed";
const BUILT = "e2e-busybox:built";

describe(`dockerd 26 + containerd 1.7 (trixie chroot) on strata's snapshotter (${driver})`, () => {
  let env: Dockerd26Env;
  let notRun: string | undefined;
  let failed = 0;
  const timings: [string, number][] = [];
  const logs = () => env.logs();
  const docker = (...args: string[]) => env.docker(...args);
  const snapshots = async (ns = MOBY_NAMESPACE) => parseSnapshots(succeeded(await env.ctrIn(ns, "snapshots", "--snapshotter", "strata", "ls"), logs));

  /** One case: refuses to run after a fatal failure, times itself, counts failures (for keeping logs). */
  const step = (name: string, fn: () => Promise<void>, opts: { timeoutMs?: number; fatal?: boolean } = {}) =>
    test.skipIf(!!skip)(
      skip ? `${name} (skipped: ${skip})` : name,
      async () => {
        if (notRun) throw new Error(`Not run: ${notRun}`);
        const t0 = performance.now();
        failed++;
        if (opts.fatal) notRun = `"${name}" did not finish`;
        try {
          await fn();
          failed--;
          if (opts.fatal) notRun = undefined;
        } finally {
          timings.push([name, performance.now() - t0]);
        }
      },
      opts.timeoutMs ?? 120_000,
    );

  afterAll(async () => {
    if (!env) return;
    if (failed > 0 || process.env.STRATA_E2E_KEEP_LOGS === "1") console.error(`[e2e dockerd26] logs kept in ${env.keepLogs()}`);
    const report = await env.stop().catch((err: Error) => {
      console.error(`[e2e dockerd26] stop failed: ${err.message}`);
      return undefined;
    });
    const leftovers = report ? [...report.killed, ...report.namespaceKilled] : [];
    if (leftovers.length) console.error(`[e2e dockerd26] stop had to kill: ${JSON.stringify(leftovers)}`);
    const rows = timings.map(([n, ms]) => `  ${(ms / 1000).toFixed(2).padStart(7)} s  ${n}`).join("\n");
    console.log(`[e2e dockerd26] case wall times (total ${(timings.reduce((s, [, ms]) => s + ms, 0) / 1000).toFixed(1)} s):\n${rows}`);
  }, 180_000);

  step("starts strata, containerd 1.7 and dockerd 26 with strata as the image store's snapshotter", async () => {
    env = await Dockerd26Env.create({ driver });
    await env.start();
    const version = succeeded(await docker("version", "--format", "{{.Server.Version}}"), logs).trim();
    check(/^26\.1\./.test(version), `dockerd is ${version}, not 26.1.x`, "", logs);
    const info = succeeded(await docker("info", "--format", "{{.Driver}} {{json .DriverStatus}}"), logs);
    check(info.startsWith("strata "), "docker info does not name strata as the storage driver", info, logs);
    check(info.includes("io.containerd.snapshotter.v1"), "docker info does not show the containerd image store (driver-type io.containerd.snapshotter.v1)", info, logs);
  }, { timeoutMs: 180_000, fatal: true });

  step("docker import of a busybox rootfs tar", async () => {
    const tar = await makeBusyboxImageTar(env.root);
    succeeded(await docker("import", tar, BASE), logs);
    mentions(await docker("images", "--format", "{{.Repository}}:{{.Tag}}"), [BASE], logs);
  }, { fatal: true });

  step("docker run --rm writes and reads a file in its rootfs", async () => {
    printed(await docker("run", "--rm", BASE, "sh", "-c", "echo hi > /f && cat /f"), "hi", logs);
    // The image's layer was unpacked into strata: containerd lists a committed snapshot of moby's on strata.
    const rows = await snapshots();
    check(rows.some((r) => r.kind === "Committed"), "strata holds no committed snapshot for moby after a run", JSON.stringify(rows), logs);
    check(strataLayerDirs(env.strataRoot).length > 0, `strata's root ${env.strataRoot} holds no layer directory`, "", logs);
  });

  step("docker diff shows the file a named container wrote", async () => {
    succeeded(await docker("run", "--name", "writer", BASE, "sh", "-c", "echo data > /made.txt && rm /etc/group"), logs);
    const diff = succeeded(await docker("diff", "writer"), logs);
    const lines = diff.split("\n").map((l) => l.trim());
    check(lines.includes("A /made.txt"), "docker diff lacks A /made.txt", diff, logs);
    check(lines.includes("D /etc/group"), "docker diff lacks D /etc/group", diff, logs);
  });

  step("docker commit makes an image whose containers see the file", async () => {
    succeeded(await docker("commit", "writer", COMMITTED), logs);
    printed(await docker("run", "--rm", COMMITTED, "cat", "/made.txt"), "data", logs);
    printed(await docker("run", "--rm", COMMITTED, "sh", "-c", "test -e /etc/group && echo present || echo gone"), "gone", logs);
  });

  step("docker export contains the file", async () => {
    const out = path.join(env.root, "writer.tar");
    succeeded(await docker("export", "-o", out, "writer"), logs);
    const members = await tarMembers(out);
    check(members.includes("made.txt") && members.includes("bin/busybox"), "the export lacks made.txt or bin/busybox", members.slice(0, 40).join("\n"), logs);
    check(!members.includes("etc/group"), "the export still holds the deleted /etc/group", "", logs);
  });

  step("docker build (BuildKit): RUN and COPY on top of the imported image", async () => {
    const ctx = path.join(env.root, "build");
    fs.mkdirSync(ctx);
    fs.writeFileSync(path.join(ctx, "added.txt"), "added\n");
    fs.writeFileSync(path.join(ctx, "Dockerfile"), `FROM ${BASE}\nRUN echo built > /built.txt\nCOPY added.txt /added.txt\n`);
    // RUN steps default to the bridge network, which --bridge=none keeps this private daemon from having.
    const res = await env.dockerWith({ timeoutMs: 300_000, extraEnv: { DOCKER_BUILDKIT: "1" } }, "build", "--network=none", "--progress=plain", "-t", BUILT, ctx);
    check(res.stderr.includes("RUN echo built") && !/legacy builder/i.test(res.stderr), "docker build did not go through BuildKit", describeResult(res), logs);
    succeeded(res, logs);
    printed(await docker("run", "--rm", BUILT, "cat", "/built.txt", "/added.txt"), "built\nadded", logs);
  }, { timeoutMs: 330_000 });

  step("docker rm and docker rmi remove the container and the images", async () => {
    succeeded(await docker("rm", "writer"), logs);
    printed(await docker("ps", "-aq"), "", logs);
    succeeded(await docker("rmi", COMMITTED, BUILT), logs);
    const images = succeeded(await docker("images", "--format", "{{.Repository}}:{{.Tag}}"), logs);
    check(!images.includes(COMMITTED) && !images.includes(BUILT), "docker images still lists a removed image", images, logs);
    check(images.includes(BASE), "docker rmi took the base image too", images, logs);
  });

  step("after a dockerd restart the image is still there and runs", async () => {
    const exit = await env.stopDockerd();
    check(!exit.forced, "dockerd needed SIGKILL to stop", JSON.stringify(exit), logs);
    await env.startDockerd();
    mentions(await docker("images", "--format", "{{.Repository}}:{{.Tag}}"), [BASE], logs);
    printed(await docker("run", "--rm", BASE, "sh", "-c", "echo after-restart"), "after-restart", logs);
  }, { timeoutMs: 180_000, fatal: true });

  step("after strata is SIGKILLed and started again, a running container works and new runs work", async () => {
    succeeded(await docker("run", "-d", "--name", "sleeper", BASE, "sleep", "600"), logs);
    printed(await docker("exec", "sleeper", "sh", "-c", "echo before > /tmp/x && cat /tmp/x"), "before", logs);
    const killed = await env.strata.kill("SIGKILL");
    check(killed.signal === "SIGKILL", "strata did not die of SIGKILL", JSON.stringify(killed), logs);
    await env.strata.start();
    printed(await docker("exec", "sleeper", "sh", "-c", "cat /tmp/x && echo after > /tmp/y && cat /tmp/y"), "before\nafter", logs);
    // containerd's gRPC client reconnects with back-off: the first run may meet the old connection.
    let last = "";
    let attempts = 0;
    await waitFor(
      async () => {
        attempts++;
        const res = await docker("run", "--rm", BASE, "echo", "new-run");
        last = describeResult(res);
        return res.code === 0 && res.stdout.trim() === "new-run";
      },
      { timeoutMs: 60_000, intervalMs: 2000, message: "No new docker run succeeded after strata's restart", context: () => `${last}\n\n${logs()}` },
    );
    if (attempts > 1) console.error(`[e2e dockerd26] a new run after strata's restart needed ${attempts} attempts; first failure:\n${last}`);
    succeeded(await docker("rm", "-f", "sleeper"), logs);
  }, { timeoutMs: 180_000 });

  step("after removing everything, strata holds no snapshot of moby's and no layer", async () => {
    const ids = succeeded(await docker("ps", "-aq"), logs).split("\n").filter(Boolean);
    if (ids.length) succeeded(await docker("rm", "-f", ...ids), logs);
    succeeded(await docker("rmi", BASE), logs);
    printed(await docker("images", "-q"), "", logs);
    // BuildKit's cache (the RUN and COPY layers, the context) keeps snapshots of its own until pruned.
    const beforePrune = (await snapshots()).map((r) => `${r.key} ${r.kind}`);
    console.error(`[e2e dockerd26] after rm and rmi of everything, before builder prune: ${beforePrune.length} moby snapshots on strata`);
    succeeded(await docker("builder", "prune", "-af"), logs);
    // containerd removes snapshots in its garbage collection, which runs shortly after a deletion.
    const t0 = Date.now();
    let rows: string[] = [];
    await waitFor(
      async () => {
        rows = (await snapshots()).map((r) => `${r.key} ${r.kind}`);
        return rows.length === 0;
      },
      { timeoutMs: 90_000, intervalMs: 1000, message: "containerd still lists moby snapshots on strata", context: () => `${rows.join("\n")}\n\n${logs()}` },
    );
    console.error(`[e2e dockerd26] moby's snapshots on strata gone ${Date.now() - t0} ms after builder prune`);
    const namespaces = succeeded(await env.ctrIn("default", "namespaces", "ls", "-q"), logs).split("\n").filter(Boolean);
    for (const ns of namespaces) {
      const left = await snapshots(ns);
      check(left.length === 0, `namespace ${ns} still holds strata snapshots`, JSON.stringify(left), logs);
    }
    let dirs: string[] = [];
    await waitFor(() => (dirs = strataLayerDirs(env.strataRoot)).length === 0, {
      timeoutMs: 30_000,
      message: `strata's root still holds layer directories`,
      context: () => `${dirs.join("\n")}\n\n${logs()}`,
    });
  }, { timeoutMs: 180_000 });
});
