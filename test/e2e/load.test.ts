/**
 * Load against a real dockerd on the plugin (compiled binary): 300 `docker run --rm` cycles, 8 at
 * a time, then a 2 GiB layer streamed straight to the plugin's socket. Zero errors; mounts and
 * the plugin's open fds back to their baseline; the plugin's peak RSS reported (and bounded), and
 * flat across the 2 GiB ApplyDiff (streamed, never buffered).
 *
 * STRATA_E2E=1 STRATA_E2E_DRIVER=overlay  (as plugin.test.ts)
 * STRATA_LOAD_CYCLES=300                  how many docker run --rm cycles
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { encodeHeader } from "../../src/archive/_tar-encode.ts";
import { entry } from "../helpers/layer-tar.ts";
import { rawCall } from "../helpers/raw-http.ts";
import { E2EEnv, e2eUnavailableReason, makeBusyboxImageTar, REPO_ROOT, succeeded } from "./harness.ts";
import { settle } from "../helpers/settle.ts";
import { skipUnlessAsked } from "./gate.ts";

const driver = process.env.STRATA_E2E_DRIVER || "vfs";
const CYCLES = Number(process.env.STRATA_LOAD_CYCLES || 300);
const PARALLEL = 8;
const BIG = 2 * 1024 ** 3;
const MiB = 1024 * 1024;
const binary = path.join(REPO_ROOT, "dist/strata");
const skip = skipUnlessAsked(e2eUnavailableReason() ?? (fs.existsSync(binary) ? undefined : "dist/strata is not built: run ./compile.sh"), "the load tests");

/** A /proc/<pid>/status field in KiB (VmRSS, VmHWM). */
function statusKiB(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : Number.NaN;
}

/** The plugin's open fds that are not sockets (files, dirs, pipes, anon inodes): what a leak would grow. */
function fileFds(pid: number): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    const target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`, { encoding: "utf8" });
    if (!target.startsWith("socket:")) out.push(target);
  }
  return out.sort();
}

/** The plugin's sockets: its listener plus the connections dockerd keeps alive (its idle pool). */
const socketFds = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length - fileFds(pid).length;

/**
 * ApplyDiff a tar of one `size`-byte file to the plugin at `socket`, generated as it is sent (the
 * test holds one 1 MiB buffer), with chunked encoding as dockerd sends layer streams.
 */
function streamBigLayer(socket: string, id: string, size: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    const reply: Buffer[] = [];
    conn.on("data", (d: Buffer) => reply.push(d));
    conn.on("error", reject);
    conn.on("end", () => {
      const text = Buffer.concat(reply).toString("latin1");
      const body = text.slice(text.indexOf("\r\n\r\n") + 4);
      resolve({ status: Number(text.split(" ")[1]), body });
    });
    const write = (b: Uint8Array) => (conn.write(b) ? Promise.resolve() : new Promise<void>((r) => conn.once("drain", () => r())));
    const chunk = (b: Uint8Array) => write(Buffer.concat([Buffer.from(`${b.byteLength.toString(16)}\r\n`), b, Buffer.from("\r\n")]));
    conn.once("connect", async () => {
      try {
        await write(Buffer.from(`POST /GraphDriver.ApplyDiff?id=${id}&parent= HTTP/1.1\r\nHost: \r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`));
        await chunk(encodeHeader(entry({ name: "big.bin", size })));
        const block = new Uint8Array(MiB);
        for (let sent = 0; sent < size; sent += block.byteLength) {
          // A different pattern per MiB, so a reader that kept or deduplicated buffers would show.
          new DataView(block.buffer).setUint32(0, sent / MiB, true);
          await chunk(block.subarray(0, Math.min(block.byteLength, size - sent)));
        }
        await chunk(new Uint8Array(1024)); // end-of-archive blocks
        await write(Buffer.from("0\r\n\r\n"));
      } catch (err) {
        reject(err);
      }
    });
  });
}

describe(`load on the plugin (${driver})`, () => {
  let env: E2EEnv | undefined;
  // Raised when a case starts and lowered when it ends well, so a case bun abandons at its timeout counts too.
  let unfinished = 0;
  afterAll(async () => {
    if (!env) return;
    if (unfinished > 0 || process.env.STRATA_E2E_KEEP_LOGS === "1") console.error(`[load ${driver}] logs kept in ${env.keepLogs()}`);
    const report = await env.teardown();
    if (report.killed.length || report.unmounted.length) {
      console.error(`[load ${driver}] teardown had to kill ${JSON.stringify(report.killed)} and unmount ${JSON.stringify(report.unmounted)}`);
    }
  }, 120_000);

  test.skipIf(!!skip)(`${CYCLES} docker run --rm cycles, ${PARALLEL} at a time: no errors, mounts and plugin fds back to baseline${skip ? ` (skipped: ${skip})` : ""}`, async () => {
    unfinished++;
    env = await E2EEnv.create({ plugin: { command: [binary], driver, logLevel: "warn" } });
    await env.start();
    const docker = (...args: string[]) => env!.dockerd.docker(...args);
    succeeded(await docker("import", "--change", 'CMD ["/bin/sh"]', await makeBusyboxImageTar(env.root), "load:base"));
    succeeded(await docker("run", "--rm", "--network", "none", "load:base", "true")); // warm up
    const pid = env.plugin!.pid!;
    const fdsBefore = fileFds(pid);
    const socketsBefore = socketFds(pid);
    const mountsBefore = env.mounts().length;
    const rssBefore = statusKiB(pid, "VmRSS");

    const started = performance.now();
    const failures: string[] = [];
    let next = 0;
    let peakRss = rssBefore;
    const worker = async () => {
      while (next < CYCLES) {
        const i = next++;
        const res = await docker("run", "--rm", "--network", "none", "load:base", "sh", "-c", `echo ${i} > /cycle && cat /cycle`);
        if (res.code !== 0 || res.stdout.trim() !== String(i)) failures.push(`cycle ${i}: exit ${res.code}: ${res.stderr.trim().slice(0, 300)}`);
        peakRss = Math.max(peakRss, statusKiB(pid, "VmRSS"));
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    const seconds = (performance.now() - started) / 1000;
    await settle(() => fileFds(pid).length, fdsBefore.length);
    const fdsAfter = fileFds(pid);
    const socketsAfter = socketFds(pid);
    const mountsAfter = await settle(() => env!.mounts().length, mountsBefore);
    const hwm = statusKiB(pid, "VmHWM");
    console.log(
      `[load ${driver}] ${CYCLES} cycles x${PARALLEL} in ${seconds.toFixed(1)} s (${(CYCLES / seconds).toFixed(1)}/s), ` +
        `errors ${failures.length}; plugin fds (not sockets) ${fdsBefore.length} -> ${fdsAfter.length}, sockets ${socketsBefore} -> ${socketsAfter}; ` +
        `mounts ${mountsBefore} -> ${mountsAfter}; ` +
        `plugin RSS ${(rssBefore / 1024).toFixed(0)} MiB before, peak seen ${(peakRss / 1024).toFixed(0)} MiB, VmHWM ${(hwm / 1024).toFixed(0)} MiB`,
    );
    expect(failures).toEqual([]);
    expect(fdsAfter).toEqual(fdsBefore);
    // dockerd keeps idle connections to the plugin (Go's pool); more than one per parallel client would be a leak.
    expect(socketsAfter).toBeLessThanOrEqual(socketsBefore + PARALLEL);
    expect(mountsAfter).toBe(mountsBefore);
    // A sanity bound, not a target: a leak of per-call state would cross it long before 300 cycles.
    expect(hwm).toBeLessThan(512 * 1024);
    expect(succeeded(await docker("ps", "-aq")).trim()).toBe("");
    unfinished--;
  }, 1_800_000);

  test.skipIf(!!skip)(`applies a 2 GiB layer with flat plugin memory${skip ? ` (skipped: ${skip})` : ""}`, async () => {
    if (!env) throw new Error("Not run: the load test did not start dockerd");
    unfinished++;
    const pid = env.plugin!.pid!;
    const socket = env.pluginSocket!;
    const id = "strata-load-2g";
    const created = await rawCall(socket, "/GraphDriver.Create", JSON.stringify({ ID: id, Parent: "" }) + "\n");
    expect(created.body.toString()).toBe('{"Err":""}');
    const hwmBefore = statusKiB(pid, "VmHWM");
    const rssBefore = statusKiB(pid, "VmRSS");
    const started = performance.now();
    const answer = await streamBigLayer(socket, id, BIG);
    const seconds = (performance.now() - started) / 1000;
    const hwmAfter = statusKiB(pid, "VmHWM");
    console.log(
      `[load ${driver}] 2 GiB ApplyDiff in ${seconds.toFixed(1)} s (${(BIG / MiB / seconds).toFixed(0)} MiB/s); ` +
        `plugin RSS ${(rssBefore / 1024).toFixed(0)} MiB before, VmHWM ${(hwmBefore / 1024).toFixed(0)} -> ${(hwmAfter / 1024).toFixed(0)} MiB`,
    );
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ Size: BIG, Err: "" });
    const dir = JSON.parse((await rawCall(socket, "/GraphDriver.Get", JSON.stringify({ ID: id, MountLabel: "" }))).body.toString()).Dir;
    const st = fs.statSync(path.join(dir, "big.bin"));
    expect(st.size).toBe(BIG);
    const fd = fs.openSync(path.join(dir, "big.bin"), "r");
    try {
      const probe = Buffer.alloc(4);
      fs.readSync(fd, probe, 0, 4, BIG - MiB);
      expect(probe.readUInt32LE(0)).toBe(BIG / MiB - 1);
    } finally {
      fs.closeSync(fd);
    }
    await rawCall(socket, "/GraphDriver.Put", JSON.stringify({ ID: id }));
    // Streaming: the peak may grow by buffers in flight, never by anything near the layer's size.
    expect(hwmAfter - hwmBefore).toBeLessThan(256 * 1024);
    expect(JSON.parse((await rawCall(socket, "/GraphDriver.Remove", JSON.stringify({ ID: id }))).body.toString())).toEqual({ Err: "" });
    unfinished--;
  }, 900_000);
});
