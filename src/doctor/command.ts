/**
 * `strata doctor [--root DIR] [--docker-socket PATH] [--json]`: what this host offers strata, one
 * line per check, before anyone switches dockerd. Probes run in a temp dir beside `--root` (on
 * the filesystem the store would use), never inside a store, and everything they mount is
 * unmounted and the dir removed. Exit 1 when a check fails (no driver can run), else 0.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import process from "node:process";
import { readMountInfo, mountsUnder } from "../mount/mountinfo.ts";
import { MNT, type Sys } from "../sys/types.ts";
import {
  type DoctorCheck, type ProbeContext, checkBackingFs, checkBtrfs, checkDType, checkDrivers, checkErofs, checkKernel, checkOverlay,
  checkSizeLimits, checkUserNamespaces,
} from "./checks.ts";
import { frontEndFor, queryDaemon } from "./docker.ts";

/** What `strata doctor` was asked for. */
export interface DoctorCommand {
  json: boolean;
  /** Where the store is or would be. */
  root: string;
  dockerSocket: string;
  sys: Sys;
  runtime: string;
}

/** doctor's whole answer. */
export interface DoctorReport {
  ok: boolean;
  runtime: string;
  checks: DoctorCheck[];
}

/** The nearest existing directory at or above `p`. */
async function _existing(p: string): Promise<string> {
  for (let dir = p; ; dir = path.dirname(dir)) {
    const st = await fs.stat(dir).catch(() => null);
    if (st?.isDirectory()) return dir;
    if (dir === "/") return "/";
  }
}

/** The daemon on `socket`: its version and which strata front end it takes. */
export async function checkDaemon(socket: string): Promise<DoctorCheck> {
  try {
    const d = await queryDaemon(socket);
    const how = frontEndFor(d.version, d.containerdStore);
    const experimental = how.plugins && !d.experimental ? " (this daemon runs without --experimental)" : "";
    return { name: "docker", status: "ok", detail: `Docker ${d.version} (API ${d.apiVersion}, storage ${d.driver}) on ${socket}: ${how.text}${experimental}` };
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why = code === "ENOENT" || code === "ECONNREFUSED" ? "nothing answers" : (err as Error).message;
    return { name: "docker", status: "info", detail: `no daemon on ${socket} (${why})` };
  }
}

/** Run every check; probes happen in a temp dir beside `root` that is gone afterwards. */
export async function doctor(cmd: Omit<DoctorCommand, "json">): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [await checkKernel()];
  // Beside the store, not in it: a Home may be a live store, and its parent is on the same filesystem.
  const base = await _existing(path.dirname(cmd.root));
  const dir = await fs.mkdtemp(path.join(base, ".strata-doctor-"));
  const ctx: ProbeContext = { sys: cmd.sys, dir, root: cmd.root };
  try {
    for (const run of [checkBackingFs, checkDType, checkOverlay, checkSizeLimits, checkErofs, checkBtrfs, checkUserNamespaces, checkDrivers]) {
      try {
        checks.push(...[await run(ctx)].flat());
      } catch (err) {
        checks.push({ name: run.name.replace(/^check/, "").toLowerCase(), status: "warn", detail: `the check itself failed: ${(err as Error).message}` });
      }
    }
  } finally {
    // Whatever a probe left mounted goes before the delete walks its directory.
    const real = await fs.realpath(dir);
    for (const m of mountsUnder(await readMountInfo(), real)) {
      try {
        cmd.sys.umount2(m.mountPoint, MNT.DETACH);
      } catch {
        // Gone with its parent's lazy unmount.
      }
    }
    await fs.rm(dir, { recursive: true, force: true });
  }
  checks.push(await checkDaemon(cmd.dockerSocket));
  return { ok: !checks.some((c) => c.status === "fail"), runtime: cmd.runtime, checks };
}

/** The report as text: one aligned line per check. */
export function formatDoctor(r: DoctorReport): string {
  const width = Math.max(...r.checks.map((c) => c.name.length));
  return r.checks.map((c) => `${c.status.padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}\n`).join("") +
    (r.ok ? "doctor: strata can run here\n" : "doctor: strata cannot run here (see fail above)\n");
}

/** Run doctor and print its report; resolves to the exit code. */
export async function runDoctor(cmd: DoctorCommand): Promise<number> {
  try {
    const report = await doctor(cmd);
    process.stdout.write(cmd.json ? JSON.stringify(report, null, 2) + "\n" : formatDoctor(report));
    return report.ok ? 0 : 1;
  } catch (err) {
    process.stderr.write(`strata: ${(err as Error).message}\n`);
    return 1;
  }
}
