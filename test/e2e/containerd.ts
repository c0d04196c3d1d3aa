/**
 * End-to-end harness: one private containerd (its own root, state, sockets and namespace) whose
 * snapshots come from containerd's built-in overlayfs or from strata's proxy snapshotter, driven with
 * the real `ctr`, with a teardown that leaves nothing behind.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { check, describeResult, run, type CommandResult, type RunOptions } from "./command.ts";
import { REPO_ROOT } from "./harness.ts";
import { logTail, makeTempRoot, mountsUnder, reapAbandonedRoots, removeTempRoot } from "./host.ts";
import { PluginProcess, type PluginExit } from "./plugin-process.ts";
import { layerDirs } from "./scenario-helpers.ts";

/** Debian 12's containerd 1.6 and its client. */
export const CONTAINERD_BIN = "/usr/bin/containerd";
export const CTR_BIN = "/usr/bin/ctr";

/** The proxy plugin's name in containerd's config: what `--snapshotter` names. */
export const PROXY_SNAPSHOTTER = "strata";

// Host paths containerd 1.6 and its runc shim use whatever the config says.
const RUNC_ROOT = "/run/containerd/runc";
const SHIM_SOCKET_DIR = "/run/containerd/s";
const CGROUP_ROOT = "/sys/fs/cgroup";

// containerd's own overlayfs keeps `metadata.db` and `snapshots/<n>/{fs,work}` here, under its root.
const OVERLAYFS_DIR = "io.containerd.snapshotter.v1.overlayfs";

// Plugin loading and gRPC chatter that would push the interesting lines out of a log tail.
const CONTAINERD_LOG_NOISE = /msg="loading plugin|msg="skip loading plugin|msg=serving\.\.\.|module=grpc/;

/** How to start strata's snapshotter: the command before `snapshotter`, e.g. `["dist/strata"]`. */
export interface StrataSnapshotterCommand {
  command: string[];
  /** strata's `--driver`. */
  driver: string;
  logLevel?: string;
  readyTimeoutMs?: number;
}

/** Which snapshotter the containers get: one of containerd's own, or strata through `[proxy_plugins]`. */
export type SnapshotterChoice = { builtin: string } | { strata: StrataSnapshotterCommand };

/** Options of {@link ContainerdEnv.create}. */
export interface ContainerdOptions {
  /** containerd's `--log-level`; debug logs every snapshot call containerd's metadata layer makes. */
  logLevel?: string;
  startTimeoutMs?: number;
  /**
   * Maps each containerd and ctr command line (host paths of the binaries) to the one that runs it,
   * e.g. inside another distribution's tree and mount namespace; `root` is the instance dir. Default: as is.
   */
  wrap?: (argv: string[], root: string) => string[];
}

/** What {@link ContainerdEnv.stop} found and did. */
export interface ContainerdStopReport {
  containerdExit?: PluginExit & { forced: boolean };
  snapshotterExit?: PluginExit & { forced: boolean };
  /** Tasks still there at stop, deleted with `ctr task delete --force`. */
  tasksDeleted: string[];
  /** Processes still running from the instance dir (shims, containers) that had to be SIGKILLed. */
  killed: string[];
  /** Mount points still there after containerd stopped, unmounted by the teardown. */
  unmounted: string[];
  /** runc state, container cgroups and shim sockets of this namespace found on the host and removed. */
  hostLeftovers: string[];
}

/**
 * A temp instance dir holding one containerd and, for strata, its snapshotter process.
 *
 * @example
 * ```ts
 * const env = await ContainerdEnv.create({ builtin: "overlayfs" });
 * await env.start();
 * await env.ctr("images", "import", "--snapshotter", env.snapshotter, "busybox-oci.tar");
 * await env.stop();
 * ```
 */
export class ContainerdEnv {
  readonly root: string;
  /** containerd's gRPC socket, what `ctr -a` names. */
  readonly socket: string;
  /** The containerd namespace every `ctr` call uses: unique, so runc state and cgroups cannot clash. */
  readonly namespace: string;
  /** The `--snapshotter` name. */
  readonly snapshotter: string;
  /** The strata snapshotter process, when the choice is strata. */
  readonly strata: PluginProcess | undefined;
  /** strata's socket, named in `[proxy_plugins.strata]` whichever snapshotter runs. */
  readonly strataSocket: string;
  /** strata's `--root`. */
  readonly strataRoot: string;
  readonly configFile: string;
  readonly logFile: string;
  readonly #containerd: PluginProcess;
  readonly #wrap: (argv: string[]) => string[];
  #stopped: Promise<ContainerdStopReport> | undefined;

  private constructor(choice: SnapshotterChoice, opts: ContainerdOptions) {
    this.root = makeTempRoot();
    this.socket = path.join(this.root, "containerd.sock");
    this.namespace = path.basename(this.root);
    this.strataSocket = path.join(this.root, "strata.sock");
    this.strataRoot = path.join(this.root, "strata-root");
    this.configFile = path.join(this.root, "config.toml");
    this.logFile = path.join(this.root, "containerd.log");
    const wrap = opts.wrap;
    this.#wrap = wrap ? (argv) => wrap(argv, this.root) : (argv) => argv;
    fs.writeFileSync(this.configFile, this.#config());
    this.#containerd = new PluginProcess({
      argv: this.#wrap([CONTAINERD_BIN, "--config", this.configFile, "--log-level", opts.logLevel ?? "debug"]),
      socket: this.socket,
      logFile: this.logFile,
      cwd: this.root,
      readyTimeoutMs: opts.startTimeoutMs ?? 30_000,
      label: "containerd",
      ready: { probe: async () => (await this.ctrWith({ timeoutMs: 5000 }, "version")).code === 0, condition: `answer ctr version on ${this.socket}` },
    });
    if ("builtin" in choice) {
      this.snapshotter = choice.builtin;
      return;
    }
    this.snapshotter = PROXY_SNAPSHOTTER;
    const s = choice.strata;
    this.strata = new PluginProcess({
      argv: [
        ...s.command,
        "snapshotter",
        "--driver", s.driver,
        "--socket", this.strataSocket,
        "--root", this.strataRoot,
        "--log-level", s.logLevel ?? "info",
      ],
      socket: this.strataSocket,
      logFile: path.join(this.root, "strata.log"),
      cwd: REPO_ROOT,
      readyTimeoutMs: s.readyTimeoutMs,
      label: "The strata snapshotter",
      // A socket file alone proves nothing (a killed process leaves it); one that accepts is served.
      ready: { probe: () => acceptsConnections(this.strataSocket), condition: `accept connections on ${this.strataSocket}` },
    });
  }

  /** Reap what crashed earlier runs left, make the instance dir and its config; nothing runs yet. */
  static async create(choice: SnapshotterChoice, opts: ContainerdOptions = {}): Promise<ContainerdEnv> {
    const reaped = await reapAbandonedRoots();
    if (reaped.length) console.error(`[e2e] removed abandoned temp roots: ${reaped.join(", ")}`);
    return new ContainerdEnv(choice, opts);
  }

  /** Where the snapshotter under test keeps its layers. */
  get snapshotterRoot(): string {
    return this.strata ? this.strataRoot : path.join(this.root, "root", `io.containerd.snapshotter.v1.${this.snapshotter}`);
  }

  /** The snapshot directories containerd's overlayfs still holds (`snapshots/<n>`); empty when all are gone. */
  overlayfsSnapshotDirs(): string[] {
    const dir = path.join(this.root, "root", OVERLAYFS_DIR, "snapshots");
    return fs.existsSync(dir) ? fs.readdirSync(dir).map((n) => path.join(dir, n)) : [];
  }

  /**
   * Start the snapshotter (strata only) and wait for its socket, then containerd, and wait until it
   * answers; for strata, also until containerd reaches the snapshotter through the proxy.
   */
  async start(): Promise<void> {
    if (this.strata) await this.strata.start();
    await this.#containerd.start();
    const res = await this.ctr("snapshots", "--snapshotter", this.snapshotter, "ls");
    check(res.code === 0, `containerd cannot list the ${this.snapshotter} snapshotter's snapshots`, describeResult(res), () => this.logs());
  }

  /** Run `ctr -a <socket> -n <namespace> ...args`. */
  ctr(...args: string[]): Promise<CommandResult> {
    return this.ctrWith({}, ...args);
  }

  /** Run `ctr ...args` with a different time limit or input. */
  ctrWith(opts: RunOptions, ...args: string[]): Promise<CommandResult> {
    return run(this.#wrap([CTR_BIN, "--address", this.socket, "--namespace", this.namespace, ...args]), { timeoutMs: 120_000, ...opts });
  }

  /**
   * `ctr run --rm` on the snapshotter: the container's output, and its exit. FIFOs go under the
   * instance dir instead of the host's /run/containerd/fifo.
   */
  runContainer(image: string, id: string, argv: string[], opts: RunOptions = {}): Promise<CommandResult> {
    return this.ctrWith(opts, "run", "--rm", "--snapshotter", this.snapshotter, "--fifo-dir", path.join(this.root, "fifo"), image, id, ...argv);
  }

  /** containerd's and the snapshotter's log tails, for failure messages. */
  logs(lines = 40): string {
    return [
      logTail(this.logFile, lines, "containerd.log", CONTAINERD_LOG_NOISE),
      this.strata?.logTail(lines),
    ].filter(Boolean).join("\n\n");
  }

  /**
   * Copy containerd's and strata's logs (and `more`, paths relative to the instance dir) to
   * `/tmp/<root>-logs`, where a reader finds them after stop; returns that dir.
   */
  keepLogs(more: string[] = []): string {
    const keep = `/tmp/${path.basename(this.root)}-logs`;
    fs.mkdirSync(keep, { recursive: true });
    for (const f of ["containerd.log", "strata.log", "config.toml", ...more]) {
      const src = path.join(this.root, f);
      if (fs.existsSync(src)) fs.copyFileSync(src, path.join(keep, path.basename(f)));
    }
    return keep;
  }

  /**
   * Delete the tasks still there, stop containerd (SIGTERM, bounded), then the snapshotter; SIGKILL
   * whatever still runs from the instance dir (shims, containers), unmount what is left under it, remove
   * it and what this namespace left on the host. Safe to call twice.
   */
  stop(): Promise<ContainerdStopReport> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<ContainerdStopReport> {
    const report: ContainerdStopReport = { tasksDeleted: [], killed: [], unmounted: [], hostLeftovers: [] };
    // Tasks deleted through containerd take their runc state, cgroups and shim sockets with them.
    if (this.#containerd.running) report.tasksDeleted = await this.#deleteTasks();
    report.containerdExit = await this.#containerd.stop(20_000);
    if (this.strata) report.snapshotterExit = await this.strata.stop(15_000);
    const taskIds = this.#taskIdsOnDisk();
    const removed = await removeTempRoot(this.root);
    report.killed = removed.killed;
    report.unmounted = removed.unmounted;
    report.hostLeftovers = this.#removeHostLeftovers(taskIds);
    return report;
  }

  async #deleteTasks(): Promise<string[]> {
    const ids = (await this.ctrWith({ timeoutMs: 10_000 }, "task", "ls", "-q")).stdout.split("\n").filter(Boolean);
    for (const id of ids) await this.ctrWith({ timeoutMs: 20_000 }, "task", "delete", "--force", id);
    return ids;
  }

  // The runtime's bundles: one directory per container that had a task.
  #taskIdsOnDisk(): string[] {
    try {
      return fs.readdirSync(path.join(this.root, "state", "io.containerd.runtime.v2.task", this.namespace));
    } catch {
      return [];
    }
  }

  /** Mount points under the instance dir right now. */
  mounts(): string[] {
    return mountsUnder(this.root);
  }

  // What containerd 1.6 keeps outside its root and state for this namespace: runc's state, the
  // containers' cgroups (`/<namespace>/<id>`) and the shims' sockets in /run/containerd/s, named
  // sha256(<containerd address>/<namespace>/<id>). Removed when present; a SIGKILLed shim leaves them all.
  #removeHostLeftovers(taskIds: string[]): string[] {
    const found: string[] = [];
    const runcState = path.join(RUNC_ROOT, this.namespace);
    if (fs.existsSync(runcState)) {
      if (fs.readdirSync(runcState).length > 0) found.push(runcState);
      fs.rmSync(runcState, { recursive: true, force: true });
    }
    for (const id of taskIds) {
      const sock = path.join(SHIM_SOCKET_DIR, createHash("sha256").update(`${this.socket}/${this.namespace}/${id}`).digest("hex"));
      if (fs.existsSync(sock)) {
        found.push(sock);
        fs.rmSync(sock, { force: true });
      }
    }
    const v2 = fs.existsSync(path.join(CGROUP_ROOT, "cgroup.controllers"));
    const parents = v2 ? [path.join(CGROUP_ROOT, this.namespace)] : fs.readdirSync(CGROUP_ROOT).map((c) => path.join(CGROUP_ROOT, c, this.namespace));
    for (const parent of parents.filter((p) => fs.existsSync(p))) {
      // cgroupfs removes a directory with rmdir alone, control files and all, once it holds no process.
      for (const child of fs.readdirSync(parent, { withFileTypes: true }).filter((e) => e.isDirectory())) {
        found.push(path.join(parent, child.name));
        _rmdir(path.join(parent, child.name));
      }
      _rmdir(parent);
    }
    return found;
  }

  #config(): string {
    const q = (s: string) => JSON.stringify(s);
    const at = (name: string) => q(path.join(this.root, name));
    return [
      "version = 2",
      `root = ${at("root")}`,
      `state = ${at("state")}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "",
      "[grpc]",
      `  address = ${q(this.socket)}`,
      "[ttrpc]",
      `  address = ${q(this.socket + ".ttrpc")}`,
      "[debug]",
      `  address = ${at("debug.sock")}`,
      "[metrics]",
      '  address = ""',
      // The opt plugin would otherwise create /opt/containerd on the host.
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${at("opt")}`,
      "",
      `[proxy_plugins.${PROXY_SNAPSHOTTER}]`,
      '  type = "snapshot"',
      `  address = ${q(this.strataSocket)}`,
      "",
    ].join("\n");
  }
}

/** True when a unix socket at `socket` accepts a connection within `timeoutMs`. */
export function acceptsConnections(socket: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.connect(socket);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      conn.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    conn.once("connect", () => done(true));
    conn.once("error", () => done(false));
  });
}

/** True when this host can run the containerd end-to-end test; otherwise the reason it cannot. */
export function containerdUnavailableReason(): string | undefined {
  if (process.env.STRATA_E2E !== "1") return "end-to-end tests are opt-in: set STRATA_E2E=1 (needs root, containerd 1.6 and runc)";
  if (process.getuid?.() !== 0) return "end-to-end tests need root (containerd, mounts)";
  for (const bin of [CONTAINERD_BIN, CTR_BIN, "/bin/busybox"]) {
    if (!fs.existsSync(bin)) return `${bin} is missing: install Debian's containerd and busybox-static`;
  }
  return undefined;
}

/**
 * The sizes `ctr snapshots usage` prints (`1.0 MiB`, `12.0 KiB`, `0 B`) in bytes, by key.
 *
 * @example
 * ```ts
 * parseUsage("KEY SIZE INODES\nc1  1.0 MiB 3\n"); // Map { "c1" => 1048576 }
 * ```
 */
export function parseUsage(text: string): Map<string, number> {
  const units: Record<string, number> = { B: 1, KiB: 1 << 10, MiB: 1 << 20, GiB: 1 << 30, TiB: 2 ** 40 };
  const out = new Map<string, number>();
  for (const line of text.split("\n").slice(1)) {
    const m = /^(\S+)\s+([\d.]+)\s*(B|KiB|MiB|GiB|TiB)\s+\d+\s*$/.exec(line.trim());
    if (m) out.set(m[1]!, Math.round(Number(m[2]) * units[m[3]!]!));
  }
  return out;
}

// What the test images and containers put in a layer; a directory holding one of these is a layer's tree.
const LAYER_MARKERS = ["bin/busybox", "top.txt", "layers", "data.txt", "mib"];

/**
 * Directories under a strata snapshotter's `--root` that still hold a layer: named like one (64 hex
 * digits, see {@link layerDirs}) or holding a file the test images or containers made (`bin/busybox`,
 * `top.txt`, `layers/`, …). It does not rely on a layout on purpose: strata's store layout is its own.
 *
 * @example
 * ```ts
 * strataLayerDirs(env.strataRoot); // [] once containerd's GC removed every snapshot
 * ```
 */
export function strataLayerDirs(root: string, depth = 6): string[] {
  const out = new Set(layerDirs(root, depth));
  const walk = (dir: string, left: number) => {
    if (LAYER_MARKERS.some((m) => _exists(path.join(dir, m)))) {
      out.add(dir);
      return;
    }
    if (left === 0) return;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name), left - 1);
  };
  walk(root, depth);
  return [...out].sort();
}

function _rmdir(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // Still holding a process the teardown could not kill: reported by the caller, nothing more to do.
  }
}

function _exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** One row of `ctr snapshots ls`. */
export interface SnapshotRow {
  key: string;
  parent: string;
  kind: string;
}

/** The rows of `ctr snapshots ls` (KEY PARENT KIND; PARENT may be empty). */
export function parseSnapshots(text: string): SnapshotRow[] {
  return text
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 2 && f[0] !== "")
    .map((f) => (f.length === 2 ? { key: f[0]!, parent: "", kind: f[1]! } : { key: f[0]!, parent: f[1]!, kind: f[2]! }));
}

