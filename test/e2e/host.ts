/** End-to-end helpers for the host: temp roots, mounts, stray processes, plugin spec files, log tails. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { removeBtrfsTree } from "../helpers/btrfs-root.ts";
import { describeResult, E2EFailure, run } from "./command.ts";

/** Where dockerd reads plugin spec files (moby pkg/plugins/discovery.go: specsPaths). */
export const PLUGIN_SPEC_DIR = "/etc/docker/plugins";

/** Prefix of every temp root and plugin name these tests create. */
export const E2E_PREFIX = "strata-e2e-";

/**
 * A fresh private directory under /tmp (short: unix socket paths are limited to 107 bytes).
 *
 * @example
 * ```ts
 * const root = makeTempRoot(); // /tmp/strata-e2e-Ab12Cd
 * ```
 */
export function makeTempRoot(prefix = E2E_PREFIX): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.writeFileSync(path.join(dir, OWNER_FILE), _processIdentity(process.pid) ?? "");
  return dir;
}

// Names the test process that made a temp root, so a later run can tell an abandoned root from a live one.
const OWNER_FILE = "owner";

// "pid starttime": a pid alone could have been reused by an unrelated process since.
function _processIdentity(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return `${pid} ${stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]}`;
  } catch {
    return undefined;
  }
}

/**
 * Remove temp roots (with their daemons, mounts and spec files) left by test processes that died
 * without tearing down (killed runner, power loss). Roots of live runs are left alone.
 */
export async function reapAbandonedRoots(prefix = E2E_PREFIX): Promise<string[]> {
  const reaped: string[] = [];
  for (const name of fs.readdirSync(os.tmpdir())) {
    if (!name.startsWith(prefix)) continue;
    const dir = path.join(os.tmpdir(), name);
    let owner: string;
    try {
      owner = fs.readFileSync(path.join(dir, OWNER_FILE), "utf8").trim();
    } catch {
      continue; // Not ours, or still being created.
    }
    const pid = Number(owner.split(" ")[0]);
    if (!pid || _processIdentity(pid) === owner) continue;
    await removeTempRoot(dir);
    reaped.push(dir);
  }
  removeStaleSpecs(prefix);
  return reaped;
}

/** A short random suffix for names that must not collide with a parallel run. */
export function randomSuffix(): string {
  return Math.random().toString(36).slice(2, 10).padEnd(8, "0");
}

/** Mount points equal to `dir` or below it, deepest first, from /proc/self/mountinfo. */
export function mountsUnder(dir: string): string[] {
  const base = path.resolve(dir);
  const points = fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => _unescape(line.split(" ")[4]!))
    .filter((p) => p === base || p.startsWith(base + "/"));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
function _unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Lazily unmount everything under `dir` (stacked mounts included); throws when something stays mounted. */
export async function unmountUnder(dir: string): Promise<string[]> {
  const done: string[] = [];
  for (let round = 0; round < 10; round++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return done;
    for (const p of points) {
      const res = await run(["umount", "--lazy", p], { timeoutMs: 10_000 });
      if (res.code === 0) done.push(p);
    }
  }
  const left = mountsUnder(dir);
  if (left.length > 0) throw new E2EFailure(`Cannot unmount under ${dir}: ${left.join(", ")} still mounted`);
  return done;
}

/** One process from /proc. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  cmdline: string;
}

/** Every process on the host (those that vanish while being read are left out). */
export function listProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8");
      // The command name in parentheses may itself contain spaces and parentheses: split after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmdline = fs.readFileSync(`/proc/${name}/cmdline`, "utf8").replaceAll("\0", " ").trim();
      out.push({ pid: Number(name), ppid, cmdline });
    } catch {
      // The process exited between readdir and read.
    }
  }
  return out;
}

/** `pids` and all their descendants, children before parents. */
export function withDescendants(pids: number[], procs = listProcesses()): number[] {
  const children = new Map<number, number[]>();
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const order: number[] = [];
  const seen = new Set<number>();
  const visit = (pid: number) => {
    if (seen.has(pid)) return;
    seen.add(pid);
    for (const c of children.get(pid) ?? []) visit(c);
    order.push(pid);
  };
  pids.forEach(visit);
  return order;
}

/**
 * SIGKILL every process whose command line names a path under `dir` (containerd, shims, a plugin)
 * and everything below them (container processes, whose own command lines do not name `dir`).
 * Returns the killed processes' command lines.
 */
export async function killProcessesUnder(dir: string, timeoutMs = 10_000): Promise<string[]> {
  const procs = listProcesses();
  const protectedPids = _ancestors(process.pid, procs);
  const roots = procs.filter((p) => p.cmdline.includes(path.resolve(dir) + "/") && !protectedPids.has(p.pid));
  const victims = withDescendants(roots.map((p) => p.pid), procs).filter((pid) => !protectedPids.has(pid));
  for (const pid of victims) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (victims.some(_alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return roots.map((p) => `${p.pid} ${p.cmdline}`);
}

function _ancestors(pid: number, procs: ProcInfo[]): Set<number> {
  const parent = new Map(procs.map((p) => [p.pid, p.ppid]));
  const out = new Set<number>();
  for (let p: number | undefined = pid; p !== undefined && p > 0 && !out.has(p); p = parent.get(p)) out.add(p);
  return out;
}

function _alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still answers signal 0; it holds nothing, so count it as gone.
    return !fs.readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  } catch {
    return false;
  }
}

/**
 * Make `name` discoverable by dockerd as a v1 plugin listening on `socket`; returns the spec file.
 * `under`: the root dockerd sees as `/` (a chroot), "" for the host's.
 */
export function writePluginSpec(name: string, socket: string, under = ""): string {
  fs.mkdirSync(under + PLUGIN_SPEC_DIR, { recursive: true });
  const file = path.join(under + PLUGIN_SPEC_DIR, `${name}.spec`);
  fs.writeFileSync(file, `unix://${path.resolve(socket)}\n`);
  return file;
}

/** Remove `name`'s spec file (under `under`, as {@link writePluginSpec}), if any. */
export function removePluginSpec(name: string, under = ""): void {
  fs.rmSync(path.join(under + PLUGIN_SPEC_DIR, `${name}.spec`), { force: true });
}

/**
 * Remove spec files left by crashed runs: ours (by prefix) whose socket's temp root is gone.
 * A parallel run's spec is kept: its temp root exists before its spec is written.
 */
export function removeStaleSpecs(prefix = E2E_PREFIX): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(PLUGIN_SPEC_DIR);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names.filter((n) => n.startsWith(prefix) && n.endsWith(".spec"))) {
    const file = path.join(PLUGIN_SPEC_DIR, name);
    const url = fs.readFileSync(file, "utf8").trim();
    const socketDir = path.dirname(url.replace(/^unix:\/\//, ""));
    if (!fs.existsSync(path.dirname(socketDir))) {
      fs.rmSync(file, { force: true });
      removed.push(file);
    }
  }
  return removed;
}

/** The last `lines` lines of a log file (those `skip` rejects left out), headed by its name. */
export function logTail(file: string, lines = 60, title = path.basename(file), skip?: RegExp): string {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return `--- ${title}: (no log at ${file}) ---`;
  }
  const all = text.trimEnd().split("\n").filter((l) => !skip?.test(l));
  return `--- ${title} (last ${Math.min(lines, all.length)} of ${all.length} lines, ${file}) ---\n${all.slice(-lines).join("\n")}`;
}

/**
 * Remove a temp root for good: kill what still runs from it, unmount what is mounted under it, delete it.
 * Refuses to delete while anything stays mounted (deleting through a bind mount would reach its source).
 */
export async function removeTempRoot(dir: string): Promise<{ killed: string[]; unmounted: string[] }> {
  const killed = await killProcessesUnder(dir);
  const unmounted = await unmountUnder(dir);
  try {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch (err) {
    // A btrfs store left behind holds read-only subvolumes (frozen layers), which only the ioctls undo.
    if ((err as { code?: string }).code !== "EROFS") throw err;
    removeBtrfsTree(dir);
  }
  return { killed, unmounted };
}

/** True when this host can run the end-to-end suite; otherwise the reason it cannot. */
export function e2eUnavailableReason(): string | undefined {
  if (process.env.STRATA_E2E !== "1") return "end-to-end tests are opt-in: set STRATA_E2E=1 (needs root and docker.io 20.10)";
  if (process.getuid?.() !== 0) return "end-to-end tests need root (dockerd, mounts)";
  for (const bin of ["/usr/sbin/dockerd", "/usr/bin/docker", "/bin/busybox"]) {
    if (!fs.existsSync(bin)) return `${bin} is missing: run scripts/install-test-deps.sh`;
  }
  return undefined;
}

/** Fail with the command when `tar` cannot list an archive; returns its member names without "./". */
export async function tarMembers(file: string): Promise<string[]> {
  const res = await run(["tar", "-tf", file]);
  if (res.code !== 0) throw new E2EFailure(`Cannot list ${file}\n${describeResult(res)}`);
  return res.stdout
    .split("\n")
    .filter(Boolean)
    .map((m) => m.replace(/^\.\//, "").replace(/\/$/, ""))
    .filter(Boolean);
}
