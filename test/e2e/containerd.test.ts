/**
 * containerd 1.6 (Debian 12) with the real `ctr` on one snapshotter: import, run, keep, a 500-layer
 * image, garbage collection, shutdown. One private containerd per snapshotter variant.
 *
 * STRATA_E2E=1                          run at all (needs root, /usr/bin/containerd, ctr and runc)
 * STRATA_E2E_SNAPSHOTTER=strata         strata's proxy snapshotter, once per variant (default)
 * STRATA_E2E_SNAPSHOTTER=overlayfs      containerd's built-in overlayfs, no strata process: the baseline
 * STRATA_E2E_DRIVER=overlay             strata's --driver (default overlay: vfs copies the base 500 times)
 * STRATA_E2E_VARIANTS=bun,deno          only these ways of running strata (default: binary,bun,deno)
 * STRATA_E2E_LOG_LEVEL=debug            strata's --log-level (default info); containerd always logs at debug
 * STRATA_E2E_KEEP_LOGS=1                keep containerd.log and strata.log in /tmp/strata-e2e-*-logs even on success
 */
import { afterAll, describe, test } from "bun:test";
import * as path from "node:path";
import {
  containerdUnavailableReason,
  ContainerdEnv,
  parseSnapshots,
  parseUsage,
  strataLayerDirs,
  type ContainerdStopReport,
  type SnapshotterChoice,
} from "./containerd.ts";
import { check, describeResult, printed, succeeded, waitFor } from "./command.ts";
import { makeBusyboxOciImage, makeManyLayerOciImage, type OciImage } from "./oci-image.ts";
import { STRATA_VARIANTS, variantSkipReason } from "./strata-variants.ts";
import { skipUnlessAsked } from "./gate.ts";
import { Steps } from "./steps.ts";

const BUSYBOX = "docker.io/library/strata-e2e-busybox:latest";
const DEEP = 500;
const MiB = 1 << 20;

/** One snapshotter under test: its describe() label, why it is skipped (if it is), how to start it. */
interface Suite {
  name: string;
  skip?: string;
  choice: SnapshotterChoice;
}

const unavailable = skipUnlessAsked(containerdUnavailableReason(), "the containerd end-to-end tests");
const which = process.env.STRATA_E2E_SNAPSHOTTER || "strata";
const driver = process.env.STRATA_E2E_DRIVER || "overlay";
const logLevel = process.env.STRATA_E2E_LOG_LEVEL || "info";

if (which === "overlayfs") {
  runSuite({ name: "containerd 1.6 on its built-in overlayfs (baseline)", skip: unavailable, choice: { builtin: "overlayfs" } });
} else if (which === "strata") {
  for (const v of STRATA_VARIANTS) {
    runSuite({
      name: `containerd 1.6 on strata's snapshotter (${driver}) via ${v.name}`,
      skip: unavailable ?? variantSkipReason(v),
      choice: { strata: { command: v.command, driver, logLevel, readyTimeoutMs: v.readyTimeoutMs } },
    });
  }
} else {
  test("STRATA_E2E_SNAPSHOTTER names a snapshotter", () => {
    throw new Error(`STRATA_E2E_SNAPSHOTTER=${which}: use strata or overlayfs`);
  });
}

function runSuite(suite: Suite): void {
  if (suite.skip) {
    describe(suite.name, () => test.skipIf(true)(`the whole suite (skipped: ${suite.skip})`, () => {}));
    return;
  }
  // The cases that depend on containerd's overlayfs layout and limits.
  const baseline = "builtin" in suite.choice && suite.choice.builtin === "overlayfs";
  const copiesParents = "builtin" in suite.choice ? suite.choice.builtin === "native" : suite.choice.strata.driver === "vfs";
  describe(suite.name, () => {
    let env: ContainerdEnv;
    let busybox: OciImage;
    const steps = new Steps(suite.name);
    const step = steps.add.bind(steps);
    const logs = () => env.logs();
    const ctr = (...args: string[]) => env.ctr(...args);
    const sn = () => env.snapshotter;
    const snapshots = async () => parseSnapshots(succeeded(await ctr("snapshots", "--snapshotter", sn(), "ls"), logs));

    afterAll(async () => {
      if (!env) return;
      steps.keepLogsIf(steps.failed, () => env.keepLogs());
      const report = await env.stop().catch((err: Error) => {
        console.error(`[e2e ${suite.name}] stop failed: ${err.message}`);
        return undefined;
      });
      if (report && _leftovers(report).length) console.error(`[e2e ${suite.name}] stop had to clean up: ${JSON.stringify(_leftovers(report))}`);
      steps.printTimings();
    }, 120_000);

    step("starts containerd with the snapshotter registered and answering", async () => {
      env = await ContainerdEnv.create(suite.choice);
      await env.start();
      const plugins = succeeded(await ctr("plugins", "ls"), logs);
      check(
        new RegExp(`^io\\.containerd\\.snapshotter\\.v1\\s+${sn()}\\s+.*\\bok\\s*$`, "m").test(plugins),
        `ctr plugins ls does not list snapshotter ${sn()} as ok`,
        plugins,
        logs,
      );
      check((await snapshots()).length === 0, "A fresh snapshotter lists snapshots", "", logs);
    }, { timeoutMs: 180_000, fatal: true });

    step("imports the busybox image and lists its committed layer", async () => {
      busybox = await makeBusyboxOciImage(env.root, BUSYBOX);
      succeeded(await ctr("images", "import", "--snapshotter", sn(), busybox.archive), logs);
      printed(await ctr("images", "ls", "-q"), BUSYBOX, logs);
      const rows = await snapshots();
      check(
        rows.length === 1 && rows[0]!.key === busybox.chainIds[0] && rows[0]!.parent === "" && rows[0]!.kind === "Committed",
        `ctr snapshots ls should list exactly the committed layer ${busybox.chainIds[0]} with no parent`,
        JSON.stringify(rows, null, 2),
        logs,
      );
    }, { fatal: true });

    step("runs a container that writes a file and reads it back; the next container does not see it", async () => {
      printed(
        await env.runContainer(BUSYBOX, "writer", ["sh", "-c", "echo hello-strata > /data.txt && cat /data.txt && head -1 /etc/passwd"]),
        "hello-strata\nroot:x:0:0:root:/root:/bin/sh",
        logs,
      );
      printed(await env.runContainer(BUSYBOX, "reader", ["sh", "-c", "cat /data.txt 2>/dev/null || echo no-data"]), "no-data", logs);
      const left = succeeded(await ctr("containers", "ls", "-q"), logs).split("\n");
      check(!left.includes("writer") && !left.includes("reader"), "ctr run --rm left its containers behind", left.join("\n"), logs);
    });

    step("keeps a container: usage shows its active snapshot grow by 1 MiB; removal drops it", async () => {
      const id = "kept";
      succeeded(await ctr("run", "-d", "--snapshotter", sn(), "--fifo-dir", path.join(env.root, "fifo"), BUSYBOX, id, "sleep", "600"), logs);
      const row = (await snapshots()).find((r) => r.key === id);
      check(row?.kind === "Active" && row.parent === busybox.chainIds[0], `ctr snapshots ls should list ${id} as Active on the busybox layer`, JSON.stringify(row), logs);
      const usage = async () => {
        const out = succeeded(await ctr("snapshots", "--snapshotter", sn(), "usage", id), logs);
        const size = parseUsage(out).get(id);
        check(size !== undefined, `ctr snapshots usage ${id} printed no size`, out, logs);
        return size;
      };
      const before = await usage();
      // Usage excludes the parents, except where a snapshot is a full copy of them (vfs, containerd's native).
      if (!copiesParents) check(before < MiB / 2, `A new container's snapshot should use next to nothing, not ${before} bytes`, "", logs);
      succeeded(await ctr("task", "exec", "--exec-id", "fill", id, "dd", "if=/dev/zero", "of=/mib", "bs=1024", "count=1024"), logs);
      printed(await ctr("task", "exec", "--exec-id", "size", id, "wc", "-c", "/mib"), "1048576 /mib", logs);
      const after = await usage();
      // ctr prints one decimal ("1.0 MiB" is anything from 1.0 to 1.05 MiB), so the growth is known to about 0.1 MiB.
      check(
        after >= MiB && after - before >= 0.9 * MiB && after - before < 1.5 * MiB,
        `Writing 1 MiB should grow the snapshot's usage by 1 to 1.5 MiB, not from ${before} to ${after} bytes`,
        "",
        logs,
      );

      succeeded(await ctr("task", "kill", "--signal", "SIGKILL", id), logs);
      await waitFor(async () => /\bSTOPPED\b/.test((await ctr("task", "ls")).stdout), { timeoutMs: 20_000, message: `Task ${id} did not stop`, context: logs });
      succeeded(await ctr("task", "delete", id), logs);
      succeeded(await ctr("containers", "delete", id), logs);
      check(!(await snapshots()).some((r) => r.key === id), `ctr snapshots ls still lists ${id} after ctr containers delete`, "", logs);
      const gone = await ctr("snapshots", "--snapshotter", sn(), "usage", id);
      check(gone.code !== 0 && /not found/.test(gone.stderr), `ctr snapshots usage ${id} should fail with "not found" after the delete`, describeResult(gone), logs);
    });

    step(
      "a snapshotter killed and started again under a running containerd: the running container keeps writing, a new one runs",
      async () => {
        const id = "survivor";
        succeeded(await ctr("run", "-d", "--snapshotter", sn(), "--fifo-dir", path.join(env.root, "fifo"), BUSYBOX, id, "sleep", "600"), logs);
        succeeded(await ctr("task", "exec", "--exec-id", "before", id, "sh", "-c", "echo before > /state"), logs);
        await env.strata!.restart(); // SIGKILL, as a crash would, then a fresh start on the same root
        // containerd's gRPC client backs off after losing the socket (grpc-go: 1 s, then longer), and
        // fails calls fast meanwhile: wait until it reaches the snapshotter again, as a user would.
        const t0 = performance.now();
        await waitFor(async () => (await ctr("snapshots", "--snapshotter", sn(), "ls")).code === 0, {
          timeoutMs: 60_000, message: "containerd did not reach the restarted snapshotter", context: logs,
        });
        console.log(`[e2e] containerd reached the restarted snapshotter after ${Math.round(performance.now() - t0)} ms`);
        succeeded(await ctr("task", "exec", "--exec-id", "after", id, "sh", "-c", "echo after >> /state"), logs);
        printed(await ctr("task", "exec", "--exec-id", "read", id, "cat", "/state"), "before\nafter", logs);
        check((await snapshots()).some((r) => r.key === id && r.kind === "Active"), `ctr snapshots ls should still list ${id} after the restart`, "", logs);
        printed(await env.runContainer(BUSYBOX, "after-restart", ["sh", "-c", "echo fresh > /f && cat /f"]), "fresh", logs);
        succeeded(await ctr("task", "kill", "--signal", "SIGKILL", id), logs);
        await waitFor(async () => /\bSTOPPED\b/.test((await ctr("task", "ls")).stdout), { timeoutMs: 20_000, message: `Task ${id} did not stop`, context: logs });
        succeeded(await ctr("task", "delete", id), logs);
        succeeded(await ctr("containers", "delete", id), logs);
      },
      { skip: "builtin" in suite.choice ? "containerd's own snapshotter runs inside containerd: nothing to restart" : undefined },
    );

    let deep: Awaited<ReturnType<typeof makeManyLayerOciImage>>;
    step(`imports a ${DEEP}-layer image and runs it: top layer, base and whiteouts all seen`, async () => {
      const t0 = performance.now();
      deep = await makeManyLayerOciImage(env.root, `docker.io/library/strata-e2e-layers:${DEEP}`, DEEP);
      console.log(`[e2e] built the ${DEEP}-layer image (${(deep.layerBytes / MiB).toFixed(1)} MiB of layers) in ${Math.round(performance.now() - t0)} ms`);
      succeeded(await env.ctrWith({ timeoutMs: 300_000 }, "images", "import", "--snapshotter", sn(), deep.archive), logs);
      const rows = await snapshots();
      const top = rows.find((r) => r.key === deep.chainIds.at(-1));
      check(top?.kind === "Committed" && top.parent === deep.chainIds.at(-2), `ctr snapshots ls should list the top layer ${deep.chainIds.at(-1)} on its parent`, JSON.stringify(top), logs);
      const committed = rows.filter((r) => r.kind === "Committed").length;
      // The busybox image's only layer is this image's base: one shared snapshot.
      check(committed === DEEP, `ctr snapshots ls should list ${DEEP} committed layers, not ${committed}`, "", logs);
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
        await env.runContainer(deep.name, "deep", ["sh", "-c", script]),
        [c.top.trim(), "layer 1", `layer ${DEEP - 1}`, "root:x:0:0:root:/root:/bin/sh", String(c.present.length), "done"].join("\n"),
        logs,
      );
    }, { timeoutMs: 420_000 });

    step(
      `a ${DEEP + 1}-layer image imports but does not run: the kernel stacks at most ${DEEP} overlay lower directories`,
      async () => {
        const over = await makeManyLayerOciImage(env.root, `docker.io/library/strata-e2e-layers:${DEEP + 1}`, DEEP + 1);
        succeeded(await env.ctrWith({ timeoutMs: 300_000 }, "images", "import", "--snapshotter", sn(), over.archive), logs);
        const res = await env.runContainer(over.name, "too-deep", ["cat", "/top.txt"]);
        // ctr mounts the rootfs itself (to read /etc/passwd for the spec) and gets EINVAL from mount(2);
        // the kernel logs "overlayfs: too many lower directories, limit is 500".
        check(
          res.code !== 0 && /failed to mount .*: invalid argument/.test(res.stderr),
          `ctr run of a ${DEEP + 1}-layer image on overlayfs should fail with EINVAL from mount(2)`,
          describeResult(res),
          logs,
        );
        const left = succeeded(await ctr("containers", "ls", "-q"), logs).split("\n");
        check(!left.includes("too-deep"), "The failed ctr run --rm left its container behind", left.join("\n"), logs);
      },
      { timeoutMs: 300_000, skip: baseline ? undefined : `documents containerd's overlayfs limit; strata is held to ${DEEP} layers` },
    );

    step("removing every image lets containerd's GC remove every snapshot and layer directory", async () => {
      const images = succeeded(await ctr("images", "ls", "-q"), logs).split("\n").filter(Boolean);
      check(images.length > 0, "There are no images to remove", "", logs);
      succeeded(await env.ctrWith({ timeoutMs: 300_000 }, "images", "rm", "--sync", ...images), logs);
      printed(await ctr("images", "ls", "-q"), "", logs);
      check((await snapshots()).length === 0, "ctr snapshots ls still lists snapshots after the GC", JSON.stringify(await snapshots()), logs);
      // Backends remove in the GC; containerd's overlayfs deletes each directory right after its Remove.
      const left = () => (baseline ? env.overlayfsSnapshotDirs() : strataLayerDirs(env.snapshotterRoot));
      await waitFor(() => left().length === 0, {
        timeoutMs: 30_000,
        message: `Layer directories are left under ${env.snapshotterRoot}`,
        context: () => `${left().slice(0, 20).join("\n")}\n\n${logs()}`,
      });
    }, { timeoutMs: 360_000 });

    step("stops containerd and the snapshotter with nothing left to kill or unmount", async () => {
      steps.keepLogsIf(steps.failed - 1, () => env.keepLogs()); // This case counts itself as failed until it passes.
      const report = await env.stop();
      check(
        report.containerdExit?.forced === false && report.snapshotterExit?.forced !== true,
        "containerd or the snapshotter did not exit on SIGTERM",
        JSON.stringify(report),
      );
      check(_leftovers(report).length === 0, "Stopping found tasks, processes, mounts or host files left behind", JSON.stringify(report, null, 2));
    }, { timeoutMs: 90_000 });
  });
}

function _leftovers(report: ContainerdStopReport): string[] {
  return [...report.tasksDeleted.map((t) => `task ${t}`), ...report.killed, ...report.unmounted, ...report.hostLeftovers];
}
