/**
 * Docker's containerd image store on strata: dockerd 26.1 and containerd 1.7 from Debian 13 (the chroot
 * of `scripts/trixie-chroot.sh`), `"features": {"containerd-snapshotter": true}` and
 * `--storage-driver strata`, driven with trixie's docker CLI: import, run, diff, commit, export, build,
 * rm, rmi, a dockerd restart, a snapshotter restart, and an empty store at the end.
 *
 * STRATA_E2E=1                 run at all (root, the chroot, dist/strata); a host that cannot run it fails
 * STRATA_TRIXIE_ROOT=DIR       the chroot (default /var/cache/strata/trixie)
 * STRATA_E2E_DRIVER=overlay    strata's --driver (default overlay)
 * STRATA_E2E_LOG_LEVEL=debug   strata's --log-level (default info)
 * STRATA_E2E_KEEP_LOGS=1       keep the logs in /tmp/strata-e2e-*-logs even on success
 */
import { afterAll, describe, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeBusyboxImageTar } from "./busybox-image.ts";
import { check, describeResult, mentions, printed, succeeded, waitFor } from "./command.ts";
import { parseSnapshots, PROXY_SNAPSHOTTER, strataLayerDirs } from "./containerd.ts";
import { dockerd26MissingReason, dockerd26SkipReason, Dockerd26Env, processesInNamespace, type Dockerd26StopReport } from "./dockerd26.ts";
import { skipUnlessAsked } from "./gate.ts";
import { Steps } from "./steps.ts";
import { mountsUnder, tarMembers } from "./host.ts";
import { chainIds, makeManyLayerOciImage } from "./oci-image.ts";
import { writeBuildContext } from "./scenario-helpers.ts";
import { STRATA_VARIANTS, variantSkipReason } from "./strata-variants.ts";

const binary = STRATA_VARIANTS.find((v) => v.id === "binary")!;
const skip = skipUnlessAsked(
  dockerd26SkipReason() ?? dockerd26MissingReason() ?? variantSkipReason(binary, [binary.id]),
  "the dockerd 26 end-to-end tests",
);
const driver = process.env.STRATA_E2E_DRIVER || "overlay";
const logLevel = process.env.STRATA_E2E_LOG_LEVEL || "info";
const BASE = "e2e-busybox:base";
const COMMITTED = "e2e-busybox:committed";
const BUILT = "e2e-busybox:built";
const LEGACY = "e2e-busybox:legacy";
// Past what one page of mount options holds even after containerd's mount package shortens the
// lowerdirs, so strata mounts the lower stack itself on the host; with the container's init layer the
// chain is 499 lowers, under overlayfs' limit of 500.
const DEEP = 498;
const NAME = `dockerd 26.1 + containerd 1.7 (trixie chroot) on strata's snapshotter (${driver}) via ${binary.name}`;

describe(NAME, () => {
  let env: Dockerd26Env;
  const steps = new Steps("dockerd26", skip);
  const step = steps.add.bind(steps);
  let report: Dockerd26StopReport | undefined;
  const logs = () => env.logs();
  const docker = (...args: string[]) => env.dockerd.docker(...args);
  const runIn = (image: string, script: string) => docker("run", "--rm", "--network", "none", image, "sh", "-c", script);
  const snapshots = async () => parseSnapshots(succeeded(await env.containerd.ctr("snapshots", "--snapshotter", PROXY_SNAPSHOTTER, "ls"), logs));
  const imageNames = async () => succeeded(await docker("images", "--format", "{{.Repository}}:{{.Tag}}"), logs).split("\n").filter(Boolean).sort();
  const layersOf = async (image: string) =>
    chainIds(JSON.parse(succeeded(await docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image), logs)) as string[]);

  afterAll(async () => {
    if (!env) return;
    steps.keepLogsIf(steps.failed, () => env.keepLogs());
    report ??= await env.stop().catch((err: Error) => {
      console.error(`[e2e dockerd26] stop failed: ${err.message}`);
      return undefined;
    });
    steps.printTimings();
  }, 180_000);

  step("starts strata, containerd 1.7 and dockerd 26.1 on the containerd image store with strata as its snapshotter", async () => {
    env = await Dockerd26Env.create({ command: binary.command, driver, logLevel, readyTimeoutMs: binary.readyTimeoutMs });
    await env.start();
    const version = succeeded(await docker("version", "--format", "{{.Server.Version}} {{.Client.Version}}"), logs).trim();
    check(/^26\.1\.\S+ 26\.1\./.test(version), `dockerd and its CLI should be 26.1.x, are ${version}`, "", logs);
    const ctrVersion = succeeded(await env.containerd.ctr("version"), logs);
    check(/Server:\s*\n\s*Version:\s*1\.7\./.test(ctrVersion), "containerd should be 1.7.x", ctrVersion, logs);
    const info = succeeded(await docker("info", "--format", "{{.Driver}} {{json .DriverStatus}}"), logs).trim();
    check(
      info.startsWith(`${PROXY_SNAPSHOTTER} `) && info.includes("io.containerd.snapshotter.v1"),
      `docker info should name ${PROXY_SNAPSHOTTER} with driver-type io.containerd.snapshotter.v1 (the containerd image store)`,
      info,
      logs,
    );
    check((await snapshots()).length === 0, "A fresh strata lists snapshots", "", logs);
  }, { timeoutMs: 180_000, fatal: true });

  step("docker import unpacks the busybox rootfs into strata", async () => {
    const tar = await makeBusyboxImageTar(env.root);
    mentions(await docker("import", tar, BASE), [/^sha256:[0-9a-f]{64}$/m], logs);
    check((await imageNames()).includes(BASE), `docker images does not list ${BASE}`, "", logs);
    const [layer] = await layersOf(BASE);
    const rows = await snapshots();
    check(
      rows.some((r) => r.key === layer && r.kind === "Committed"),
      `strata should hold the imported layer ${layer} as a committed snapshot`,
      JSON.stringify(rows, null, 2),
      logs,
    );
    check(strataLayerDirs(env.containerd.strataRoot).length > 0, `strata's root ${env.containerd.strataRoot} holds no layer`, "", logs);
  }, { fatal: true });

  step("docker run writes a file and reads it back; the next container does not see it", async () => {
    printed(await runIn(BASE, "echo hello-strata > /data.txt && cat /data.txt && head -1 /etc/passwd"), "hello-strata\nroot:x:0:0:root:/root:/bin/sh", logs);
    printed(await runIn(BASE, "test -e /data.txt && echo leaked || echo clean"), "clean", logs);
  });

  step("docker diff lists what a container added, changed and deleted", async () => {
    succeeded(await docker("run", "--name", "c-diff", "--network", "none", BASE, "sh", "-c", "echo made > /tmp/made.txt && rm /bin/ls && mkdir /newdir"), logs);
    const diff = succeeded(await docker("diff", "c-diff"), logs);
    const lines = new Set(diff.split("\n").map((l) => l.trim()));
    const want = ["C /tmp", "A /tmp/made.txt", "C /bin", "D /bin/ls", "A /newdir"];
    const missing = want.filter((l) => !lines.has(l));
    check(missing.length === 0, `docker diff lacks ${missing.join(", ")}`, diff, logs);
  });

  step("docker commit makes an image with the container's changes, and it runs", async () => {
    mentions(await docker("commit", "c-diff", COMMITTED), [/^sha256:[0-9a-f]{64}$/m], logs);
    printed(await runIn(COMMITTED, "cat /tmp/made.txt; test -e /bin/ls && echo ls-present || echo ls-absent; test -d /newdir && echo dir"), "made\nls-absent\ndir", logs);
    const [base, top] = await layersOf(COMMITTED);
    check(base === (await layersOf(BASE))[0] && top !== undefined, "The committed image should be the base layer plus one", `${base} ${top}`, logs);
    check((await snapshots()).some((r) => r.key === top && r.kind === "Committed"), `strata does not hold the committed layer ${top}`, "", logs);
  });

  step("docker export writes the container's filesystem as a tar", async () => {
    const out = path.join(env.root, "c-diff.tar");
    succeeded(await docker("export", "-o", out, "c-diff"), logs);
    const members = new Set(await tarMembers(out));
    check(
      members.has("tmp/made.txt") && members.has("bin/busybox") && members.has("newdir") && !members.has("bin/ls"),
      "The export should hold tmp/made.txt, bin/busybox and newdir, and not the deleted bin/ls",
      [...members].slice(0, 60).join("\n"),
      logs,
    );
  });

  step("docker build (BuildKit through trixie's buildx) with RUN and COPY on the imported image", async () => {
    const ctx = writeBuildContext(env.root, "buildkit", BASE);
    // RUN would join the default bridge network, which --bridge=none leaves this daemon without.
    const res = await env.dockerd.dockerWith({ timeoutMs: 300_000, extraEnv: { DOCKER_BUILDKIT: "1" } }, "build", "--progress", "plain", "--network", "none", "-t", BUILT, ctx);
    mentions(res, [/RUN echo buildkit/, `naming to docker.io/library/${BUILT}`], logs);
    printed(await runIn(BUILT, "cat /built.txt /hello.txt; test -e /bin/ls && echo ls-present || echo ls-absent"), "buildkit\nhello from buildkit\nls-absent", logs);
  }, { timeoutMs: 330_000 });

  step("docker build with the legacy builder (DOCKER_BUILDKIT=0)", async () => {
    const ctx = writeBuildContext(env.root, "legacy", BASE);
    const res = await env.dockerd.dockerWith({ timeoutMs: 300_000, extraEnv: { DOCKER_BUILDKIT: "0" } }, "build", "--network", "none", "-t", LEGACY, ctx);
    mentions(res, [`Successfully tagged ${LEGACY}`], logs);
    printed(await runIn(LEGACY, "cat /built.txt /hello.txt; test -e /bin/ls && echo ls-present || echo ls-absent"), "legacy\nhello from legacy\nls-absent", logs);
  }, { timeoutMs: 330_000 });

  let diffContainer = "";
  step("docker rm removes the container's snapshot; its init layer stays only under the committed image's layer", async () => {
    const id = (diffContainer = succeeded(await docker("inspect", "--format", "{{.Id}}", "c-diff"), logs).trim());
    const init = `${id}-init`;
    const before = await snapshots();
    check(before.some((r) => r.key === id && r.kind === "Active" && r.parent === init), `strata does not hold the container's snapshot ${id} on ${init}`, JSON.stringify(before, null, 2), logs);
    succeeded(await docker("rm", "c-diff"), logs);
    printed(await docker("ps", "-aq", "--filter", "name=c-diff"), "", logs);
    // dockerd 26's commit unpacks the new layer onto the container's init layer (parent "<id>-init"), so
    // that one cannot go (strata answers FailedPrecondition) until the committed image does.
    let rows: typeof before = [];
    await waitFor(
      async () => {
        rows = await snapshots();
        return !rows.some((r) => r.key === id) && (!rows.some((r) => r.key === init) || rows.some((r) => r.parent === init));
      },
      {
        timeoutMs: 30_000,
        message: `strata still holds the removed container's snapshot ${id}, or its init layer with nothing on it`,
        context: () => `${JSON.stringify(rows, null, 2)}\n\n${logs()}`,
      },
    );
  });

  step("docker rmi removes the image and, by containerd's GC, its layer and the init layer under it, but not the shared base", async () => {
    const [base, top] = await layersOf(COMMITTED);
    mentions(await docker("rmi", COMMITTED), [`Untagged: ${COMMITTED}`], logs);
    check(!(await imageNames()).includes(COMMITTED), `docker images still lists ${COMMITTED}`, "", logs);
    let keys: string[] = [];
    const gone = [top!, `${diffContainer}-init`];
    await waitFor(async () => !(keys = (await snapshots()).map((r) => r.key)).some((k) => gone.includes(k)), {
      timeoutMs: 90_000,
      intervalMs: 1000,
      message: `containerd did not remove ${gone.join(" and ")} from strata`,
      context: () => `${keys.join("\n")}\n\n${logs()}`,
    });
    check(keys.includes(base!), `The base layer ${base} went with the committed image`, keys.join("\n"), logs);
  }, { timeoutMs: 120_000 });

  step("after a dockerd restart the images are there and run, and a stopped container keeps its files", async () => {
    const script = "test -e /kept.txt && cat /kept.txt || echo fresh; echo kept > /kept.txt";
    printed(await docker("run", "--name", "c-keep", "--network", "none", BASE, "sh", "-c", script), "fresh", logs);
    const before = await imageNames();
    const exit = await env.dockerd.restart();
    check(exit.code === 0 && !exit.killed, "dockerd should stop cleanly on SIGTERM", JSON.stringify(exit), logs);
    const after = await imageNames();
    check(JSON.stringify(after) === JSON.stringify(before), "docker images changed across the restart", `before: ${before}\nafter: ${after}`, logs);
    printed(await runIn(BUILT, "cat /built.txt"), "buildkit", logs);
    // The container's writable snapshot outlived the daemon: its second run finds the file.
    printed(await docker("start", "--attach", "c-keep"), "kept", logs);
    succeeded(await docker("rm", "c-keep"), logs);
  }, { timeoutMs: 180_000, fatal: true });

  step("after strata is SIGKILLed and started again, a running container keeps working and new runs work", async () => {
    succeeded(await docker("run", "-d", "--name", "c-live", "--network", "none", BASE, "sleep", "600"), logs);
    // docker exec joins the container's mount namespace: it must land in the busybox rootfs.
    printed(await docker("exec", "c-live", "sh", "-c", "head -1 /etc/passwd; echo before > /tmp/x && cat /tmp/x"), "root:x:0:0:root:/root:/bin/sh\nbefore", logs);
    const strata = env.containerd.strata!;
    const killedPid = strata.pid;
    const exit = await strata.kill("SIGKILL");
    check(exit.signal === "SIGKILL", "strata did not die of SIGKILL", JSON.stringify(exit), logs);
    // With strata gone the container's rootfs still answers: its mounts do not depend on the process.
    printed(await docker("exec", "c-live", "sh", "-c", "cat /tmp/x && echo during > /tmp/y && cat /tmp/y"), "before\nduring", logs);
    await strata.start();
    check(strata.pid !== killedPid, "strata did not start again", "", logs);
    printed(await docker("exec", "c-live", "sh", "-c", "cat /tmp/x /tmp/y && echo after > /tmp/z && cat /tmp/z"), "before\nduring\nafter", logs);
    // containerd's gRPC client backs off after losing the socket: the first calls may still fail.
    let last = "";
    let attempts = 0;
    await waitFor(
      async () => {
        attempts++;
        const res = await runIn(BASE, "echo new-run");
        last = describeResult(res);
        return res.code === 0 && res.stdout.trim() === "new-run";
      },
      { timeoutMs: 60_000, intervalMs: 1000, message: "No docker run succeeded after strata's restart", context: () => `${last}\n\n${logs()}` },
    );
    if (attempts > 1) console.error(`[e2e dockerd26] the first run after strata's restart took ${attempts} attempts; last failure:\n${last}`);
    printed(await runIn(BUILT, "cat /hello.txt"), "hello from buildkit", logs);
    succeeded(await docker("rm", "-f", "c-live"), logs);
  }, { timeoutMs: 180_000 });

  step(`docker load of a ${DEEP}-layer image and docker run on it: the lower stack strata mounts on the host reaches the container`, async () => {
    const t0 = performance.now();
    const deep = await makeManyLayerOciImage(env.root, `docker.io/library/strata-e2e-layers:${DEEP}`, DEEP);
    const built = performance.now();
    mentions(await env.dockerd.dockerWith({ timeoutMs: 300_000 }, "load", "-i", deep.archive), [deep.name.replace("docker.io/library/", "")], logs);
    const loaded = performance.now();
    check(JSON.stringify(await layersOf(deep.name)) === JSON.stringify(deep.chainIds), `docker image inspect ${deep.name} should list the ${DEEP} layers written`, "", logs);
    succeeded(await docker("run", "-d", "--name", "c-deep", "--network", "none", deep.name, "sleep", "600"), logs);
    const stacks = mountsUnder(env.containerd.strataRoot);
    check(stacks.length > 0, `strata mounted no lower stack under ${env.containerd.strataRoot} for a ${DEEP}-layer chain`, "", logs);
    const c = deep.contents;
    const absent = [...c.whitedOut.slice(0, 3), c.whitedOut.at(-1)!, c.baseWhitedOut];
    const script = [
      "cat /top.txt",
      `cat ${c.present[0]} ${c.present.at(-1)}`,
      "head -1 /etc/passwd",
      "ls /layers | wc -l",
      ...absent.map((f) => `test -e ${f} && echo still-there:${f}`),
      "echo done",
    ].join("; ");
    printed(
      await docker("exec", "c-deep", "sh", "-c", script),
      [c.top.trim(), "layer 1", `layer ${DEEP - 1}`, "root:x:0:0:root:/root:/bin/sh", String(c.present.length), "done"].join("\n"),
      logs,
    );
    succeeded(await docker("rm", "-f", "c-deep"), logs);
    console.log(`[e2e dockerd26] ${DEEP}-layer image: built in ${Math.round(built - t0)} ms, docker load ${Math.round(loaded - built)} ms, ${stacks.length} stack mount(s) of strata's`);
  }, { timeoutMs: 420_000, skip: driver === "vfs" ? `vfs copies every parent into each layer: ${DEEP} copies of the chain, and no lower stacks to test` : undefined });

  step("after removing every container, image and build cache, strata holds no snapshot and no layer", async () => {
    const ids = succeeded(await docker("ps", "-aq"), logs).split("\n").filter(Boolean);
    if (ids.length) succeeded(await docker("rm", "-f", ...ids), logs);
    const images = await imageNames();
    if (images.length) succeeded(await docker("rmi", ...images), logs);
    printed(await docker("images", "-q"), "", logs);
    // BuildKit's cache (RUN and COPY results, the context) holds snapshots of its own until pruned.
    succeeded(await docker("builder", "prune", "-af"), logs);
    let rows: string[] = [];
    await waitFor(async () => (rows = (await snapshots()).map((r) => `${r.key} ${r.kind}`)).length === 0, {
      timeoutMs: 90_000,
      intervalMs: 1000,
      message: "containerd still lists snapshots on strata after everything was removed",
      context: () => `${rows.join("\n")}\n\n${logs()}`,
    });
    let dirs: string[] = [];
    await waitFor(() => (dirs = strataLayerDirs(env.containerd.strataRoot)).length === 0, {
      timeoutMs: 30_000,
      message: "strata's root still holds layers",
      context: () => `${dirs.join("\n")}\n\n${logs()}`,
    });
  }, { timeoutMs: 180_000 });

  step("stops dockerd, containerd and strata and leaves no process, mount or namespace behind", async () => {
    const root = env.root;
    const inode = env.namespaceInode;
    steps.keepLogsIf(steps.failed - 1, () => env.keepLogs()); // this case counts itself until it ends
    report = await env.stop();
    check(report.dockerdExit?.code === 0 && !report.dockerdExit.killed, "dockerd should exit 0 on SIGTERM", JSON.stringify(report.dockerdExit), logs);
    const c = report.containerd!;
    check(!c.containerdExit?.forced && !c.snapshotterExit?.forced, "containerd or strata needed SIGKILL", JSON.stringify(c), logs);
    check(c.killed.length === 0 && report.namespaceLeftovers.length === 0, "Processes outlived the daemons", JSON.stringify(report), logs);
    check(mountsUnder(root).length === 0 && !fs.existsSync(root), `${root} is still there or mounted`, mountsUnder(root).join("\n"), logs);
    check(inode !== undefined && processesInNamespace(inode).length === 0, "A process is still in the chroot's mount namespace", "", logs);
  }, { timeoutMs: 180_000 });
});
