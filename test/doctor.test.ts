import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import "../src/drivers.ts";
import { register, registeredDrivers, registrationOf, unregister } from "../src/core/driver.ts";
import { doctor, formatDoctor, runDoctor } from "../src/doctor/command.ts";
import { kernelVersion } from "../src/doctor/checks.ts";
import { frontEndFor } from "../src/doctor/docker.ts";
import { createSys } from "../src/sys/bun.ts";
import { TEST_DRIVERS, sizeLimitsUnavailable } from "./helpers/drivers.ts";
import { mountsBelow } from "./helpers/mounts.ts";

const sys = createSys();
const BUN = path.resolve("node_modules/.bin/bun");
const overlaySkip = TEST_DRIVERS.find((d) => d.name === "overlay")!.skip;

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "strata-doctor-"));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** A fake Docker daemon on a unix socket answering /version and /info. */
function fakeDaemon(socket: string, version: string, info: Record<string, unknown>) {
  return Bun.serve({
    unix: socket,
    fetch: (req) => {
      const p = new URL(req.url, "http://d").pathname;
      if (p === "/version") return Response.json({ Version: version, ApiVersion: "1.41" });
      if (p === "/info") return Response.json(info);
      return new Response("no", { status: 404 });
    },
  });
}

/** doctor as a child that does not block this process (the fake daemon answers from here). */
async function doctorAsync(...args: string[]): Promise<string> {
  const p = Bun.spawn([BUN, "src/main.bun.ts", "doctor", ...args], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  return out;
}

const doctorCli = (...args: string[]) => {
  const p = Bun.spawnSync([BUN, "src/main.bun.ts", "doctor", ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
};

describe("strata doctor", () => {
  test("--json: one entry per check, matching what this host can do, and nothing left behind", async () => {
    const store = path.join(root, "var/lib/docker/strata");
    const r = doctorCli("--json", "--root", store, "--docker-socket", path.join(root, "none.sock"));
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as { ok: boolean; runtime: string; checks: Array<{ name: string; status: string; detail: string }> };
    expect(report).toMatchObject({ ok: true, runtime: "bun" });
    const by = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    expect(report.checks.map((c) => c.name)).toEqual([
      "kernel", "backing-fs", "d_type", "overlay", ...(overlaySkip ? [] : ["overlay-diff"]), "size-limits", "erofs",
      ...(by["erofs-file"] ? ["erofs-file"] : []), "btrfs", "userns", ...registeredDrivers().map((d) => `driver ${d}`), "driver auto", "docker",
    ]);
    for (const c of report.checks) expect(["ok", "warn", "fail", "info"]).toContain(c.status);
    expect(by.kernel.detail).toStartWith(os.release());
    expect(by["backing-fs"].detail).toBe(`"${store}" is on ${(await import("../src/sys/fs-magic.ts")).backingFs(sys, root)}`);
    expect(by["driver vfs"]).toEqual({ name: "driver vfs", status: "ok", detail: "initialises here" });
    expect(by.overlay.status).toBe(overlaySkip ? "warn" : "ok");
    expect(by["driver overlay"].status).toBe(overlaySkip ? "warn" : "ok");
    expect(by["driver auto"]).toEqual({ name: "driver auto", status: "ok", detail: `would pick ${overlaySkip ? "vfs" : "overlay"}` });
    expect(by["size-limits"].status).toBe(sizeLimitsUnavailable ? "warn" : "ok");
    expect(by.docker).toEqual({ name: "docker", status: "info", detail: `no daemon on ${path.join(root, "none.sock")} (nothing answers)` });
    // Probed beside the store, never in it: nothing made there, nothing left mounted or on disk.
    expect(fs.existsSync(store)).toBe(false);
    expect(fs.readdirSync(root)).toEqual([]);
    expect(mountsBelow(root)).toEqual([]);
  }, 60_000);

  test("text: one aligned line per check, then the verdict", () => {
    const r = doctorCli("--root", path.join(root, "s"), "--docker-socket", path.join(root, "none.sock"));
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ok    kernel +\S/);
    expect(lines.slice(0, -1).every((l) => /^(ok  |warn|fail|info)  \S.* {2}\S/.test(l))).toBe(true);
    expect(lines.at(-1)).toBe("doctor: strata can run here");
  }, 60_000);

  test("names the daemon's version and the front end it needs", async () => {
    const socket = path.join(root, "docker.sock");
    for (const [version, info, expected] of [
      ["20.10.24", { Driver: "overlay2", DriverStatus: [], ExperimentalBuild: true }, "Docker 20.10.24 (API 1.41, storage overlay2) on SOCK: loads graphdriver plugins with --experimental: strata serve"],
      ["26.1.5", { Driver: "overlay2", DriverStatus: [] }, "loads graphdriver plugins with --experimental: strata serve (this daemon runs without --experimental)"],
      ["28.1.1", { Driver: "overlay2", DriverStatus: [] }, "loads no graphdriver plugins (removed in 28): strata snapshotter with the containerd image store"],
      ["26.1.5", { Driver: "overlayfs", DriverStatus: [["driver-type", "io.containerd.snapshotter.v1"]] }, "keeps images in containerd (containerd image store): strata snapshotter"],
    ] as const) {
      const server = fakeDaemon(socket, version, info);
      try {
        const docker = JSON.parse(await doctorAsync("--json", "--root", path.join(root, "s"), "--docker-socket", socket)).checks.at(-1);
        expect(docker.name).toBe("docker");
        expect(docker.status).toBe("ok");
        expect(docker.detail).toContain(expected.replace("SOCK", socket));
      } finally {
        server.stop(true);
      }
    }
  }, 60_000);

  test("exits 1 when no driver can initialise", async () => {
    const saved = registeredDrivers().map((name) => [name, registrationOf(name)!] as const);
    for (const [name] of saved) unregister(name);
    try {
      const report = await doctor({ root: path.join(root, "s"), dockerSocket: path.join(root, "none.sock"), sys, runtime: "bun" });
      expect(report.ok).toBe(false);
      expect(report.checks.find((c) => c.name === "driver auto")).toEqual({ name: "driver auto", status: "fail", detail: "no driver initialises on this host" });
      expect(formatDoctor(report).trimEnd().split("\n").at(-1)).toBe("doctor: strata cannot run here (see fail above)");
      const out = process.stdout.write;
      process.stdout.write = () => true;
      try {
        expect(await runDoctor({ json: true, root: path.join(root, "s"), dockerSocket: path.join(root, "none.sock"), sys, runtime: "bun" })).toBe(1);
      } finally {
        process.stdout.write = out;
      }
    } finally {
      for (const [name, r] of saved) register(name, r.init, r.priority, r.layout);
    }
  });

  test("kernel versions and daemon versions", () => {
    expect(kernelVersion("6.1.0-18-amd64")).toEqual([6, 1]);
    expect(kernelVersion("weird")).toEqual([0, 0]);
    expect(frontEndFor("27.3.1", false).text).toContain("DOCKERD_DEPRECATED_GRAPHDRIVER_PLUGINS=1");
    expect(frontEndFor("1.13.1", false).plugins).toBe(true);
    expect(frontEndFor("29.0.0", false).plugins).toBe(false);
  });
});
