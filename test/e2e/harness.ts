/**
 * End-to-end harness: one private dockerd on a storage driver (built-in, the plugin as a child process
 * found through a spec file, or the plugin as a managed plugin of that dockerd), with a teardown that
 * leaves nothing behind.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { E2EFailure } from "./command.ts";
import { Dockerd, type DaemonExit } from "./dockerd.ts";
import { inTrixie, killNamespace, makeTrixieNamespace, namespaceMounts } from "./trixie-ns.ts";
import {
  E2E_PREFIX,
  makeTempRoot,
  mountsUnder,
  randomSuffix,
  reapAbandonedRoots,
  removePluginSpec,
  removeTempRoot,
  writePluginSpec,
} from "./host.ts";
import { ManagedPlugin, type ManagedPluginSpec, type PluginCrash } from "./managed-plugin.ts";
import { PluginProcess, type PluginExit } from "./plugin-process.ts";

export * from "./busybox-image.ts";
export * from "./command.ts";
export * from "./dockerd.ts";
export * from "./host.ts";
export * from "./managed-plugin.ts";
export * from "./plugin-process.ts";

/** The repository root (the plugin's working directory). */
export const REPO_ROOT = path.resolve(import.meta.dir, "../..");

/** How to start the plugin: the command before `serve`, e.g. `["dist/strata"]`. */
export interface PluginCommand {
  command: string[];
  /** strata's `--driver`. */
  driver: string;
  logLevel?: string;
  readyTimeoutMs?: number;
}

/** Which storage the daemon uses. */
export type StorageChoice = { builtin: string } | { plugin: PluginCommand } | { managed: ManagedPluginSpec };

/** Daemon settings beyond the storage driver. */
export interface DaemonChoice {
  /** More dockerd flags (e.g. `--userns-remap=default`). */
  extraArgs?: string[];
  /**
   * Run dockerd (and the containerd it starts, and the docker CLI) from this chroot, in a private
   * mount namespace that sees the temp root at the same path (dockerd26.ts: Debian 13's dockerd 26.1).
   */
  chroot?: string;
}

/** What {@link E2EEnv.teardown} found and did. */
export interface TeardownReport {
  dockerdExit?: DaemonExit;
  pluginExit?: PluginExit & { forced: boolean };
  /** Processes still running from the temp root that had to be SIGKILLed. */
  killed: string[];
  /** Mount points that were still there and had to be unmounted. */
  unmounted: string[];
}

/**
 * A temp root holding one dockerd and, for a plugin, the plugin process and its spec file.
 *
 * @example
 * ```ts
 * const env = await E2EEnv.create({ plugin: { command: ["dist/strata"], driver: "vfs" } });
 * await env.start();
 * await env.dockerd.docker("info");
 * await env.teardown();
 * ```
 */
export class E2EEnv {
  readonly root: string;
  readonly dockerd: Dockerd;
  readonly plugin: PluginProcess | undefined;
  /** The managed plugin, when the storage is one. */
  readonly managed: ManagedPlugin | undefined;
  /** The plugin's name for dockerd (`--storage-driver`), unique per run. */
  readonly pluginName: string | undefined;
  readonly pluginSocket: string | undefined;
  #specWritten = false;
  #tornDown = false;
  #chroot: string | undefined;
  /** A chroot daemon's /run/docker/plugins as the host sees it ("" for the host's own). */
  #pluginExecRoot = "";
  /** The chroot's mount namespace, once made. */
  #namespaceInode: number | undefined;

  private constructor(storage: StorageChoice, daemon: DaemonChoice) {
    this.root = makeTempRoot();
    this.#chroot = daemon.chroot;
    const root = this.root;
    const wrap = daemon.chroot === undefined ? undefined : (argv: string[]) => inTrixie(root, argv);
    // As the snapshotter's dockerd 26 runs: cgroupfs, under a parent named after the temp root.
    const chrootArgs = ["--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", `/${path.basename(root)}`, "--ip6tables=false"];
    const extraArgs = [...(daemon.chroot === undefined ? [] : chrootArgs), ...(daemon.extraArgs ?? [])];
    if (daemon.chroot !== undefined && "builtin" in storage) throw new E2EFailure("A chroot daemon is wired for strata only");
    if ("builtin" in storage) {
      this.dockerd = new Dockerd({ root: this.root, storageDriver: storage.builtin, extraArgs });
      return;
    }
    if ("managed" in storage) {
      // Plugin names are per daemon (kept under its data-root), so the plain NAME:TAG cannot collide.
      // From a chroot the plugin's socket is in the namespace's /run: bound to a directory of the temp root.
      this.#pluginExecRoot = daemon.chroot === undefined ? "" : path.join(this.root, "plugin-exec");
      const spec = daemon.chroot === undefined ? storage.managed : { ...storage.managed, dir: path.join(this.root, "plugin-src") };
      this.managed = new ManagedPlugin(spec, this.root, { wrap, extraArgs, execRoot: this.#pluginExecRoot || undefined });
      // The docker CLI runs in the chroot too and reads the plugin directory there: a copy in the temp root.
      if (spec.dir !== storage.managed.dir) fs.cpSync(storage.managed.dir, spec.dir, { recursive: true });
      this.dockerd = new Dockerd({
        root: this.root,
        storageDriver: storage.managed.name,
        storageOpts: [`strata.driver=${storage.managed.driver}`],
        extraArgs,
        wrap,
      });
      return;
    }
    this.pluginName = `${E2E_PREFIX}${randomSuffix()}`;
    this.pluginSocket = path.join(this.root, "plugins", "strata.sock");
    fs.mkdirSync(path.dirname(this.pluginSocket), { recursive: true });
    const p = storage.plugin;
    this.plugin = new PluginProcess({
      argv: [
        ...p.command,
        "serve",
        "--driver", p.driver,
        "--socket", this.pluginSocket,
        "--state-dir", path.join(this.root, "state"),
        "--log-level", p.logLevel ?? "info",
      ],
      socket: this.pluginSocket,
      logFile: path.join(this.root, "plugin.log"),
      cwd: REPO_ROOT,
      readyTimeoutMs: p.readyTimeoutMs,
    });
    this.dockerd = new Dockerd({ root: this.root, storageDriver: this.pluginName, extraArgs, wrap });
  }

  /** Reap what crashed earlier runs left, make a temp root (and a unique plugin name); nothing runs yet. */
  static async create(storage: StorageChoice, daemon: DaemonChoice = {}): Promise<E2EEnv> {
    const reaped = await reapAbandonedRoots();
    if (reaped.length) console.error(`[e2e] removed abandoned temp roots: ${reaped.join(", ")}`);
    return new E2EEnv(storage, daemon);
  }

  /** The name dockerd knows the storage driver by (`docker info` → Storage Driver). */
  get driverName(): string {
    return this.dockerd.storageDriver;
  }

  /**
   * Where the driver keeps its layers: Init's Home. For a v1 plugin `<data-root>/<name>`; a managed
   * plugin gets `/data/<name>` inside, which is `<data-root>/plugins/<id>/propagated-mount/<name>` here.
   * A daemon with `--userns-remap` keeps everything, Home included, in `<data-root>/<uid>.<gid>/` instead.
   */
  get layerHome(): string {
    if (this.managed) return path.join(this.managed.propagatedMount, this.driverName);
    return path.join(this.dockerd.dataRoot, this.driverName);
  }

  /** Start the plugin (if any), publish its spec file, start dockerd. A managed plugin is installed first. */
  async start(): Promise<void> {
    if (this.#chroot !== undefined) this.#namespaceInode = await makeTrixieNamespace(this.root, this.#chroot, this.#pluginExecRoot);
    if (this.managed) await this.managed.install();
    if (this.plugin) {
      await this.plugin.start();
      // The chroot's /etc is what dockerd reads there: the spec goes into the cached tree until teardown.
      writePluginSpec(this.pluginName!, this.pluginSocket!, this.#chroot ?? "");
      this.#specWritten = true;
    }
    await this.dockerd.start();
  }

  /**
   * SIGKILL the plugin as a crash would, with dockerd running, and wait until it serves again: the
   * harness restarts a v1 plugin process, dockerd restarts a managed plugin itself.
   */
  async crashPlugin(): Promise<PluginCrash> {
    if (this.managed) return await this.managed.crash(60_000, () => this.logs());
    if (!this.plugin) throw new E2EFailure("A built-in driver has no plugin process to kill");
    const killedPid = this.plugin.pid;
    const exit = await this.plugin.kill("SIGKILL");
    if (exit.signal !== "SIGKILL") throw new E2EFailure(`The plugin did not die of SIGKILL: ${JSON.stringify(exit)}\n\n${this.logs()}`);
    await this.plugin.start();
    return { killedPid: killedPid ?? 0, restartedPid: this.plugin.pid ?? 0 };
  }

  /** dockerd's and the plugin's log tails (a managed plugin's output is in dockerd's log), for failure messages. */
  logs(lines = 40): string {
    return [this.dockerd.logTail(lines), this.plugin?.logTail(lines)].filter(Boolean).join("\n\n");
  }

  /**
   * Stop dockerd (SIGTERM, bounded), stop the plugin, SIGKILL whatever still runs from the temp root
   * (containerd, shims and their containers), lazily unmount everything under it, remove the spec
   * file and the temp root. Safe to call twice.
   */
  async teardown(): Promise<TeardownReport> {
    if (this.#tornDown) return { killed: [], unmounted: [] };
    this.#tornDown = true;
    const report: TeardownReport = { killed: [], unmounted: [] };
    try {
      report.dockerdExit = await this.dockerd.stop(45_000);
      if (this.plugin) report.pluginExit = await this.plugin.stop(10_000);
      if (this.#namespaceInode !== undefined) report.killed.push(...killNamespace(this.#namespaceInode));
      const removed = await removeTempRoot(this.root);
      report.killed.push(...removed.killed);
      report.unmounted = removed.unmounted;
    } finally {
      if (this.#specWritten) removePluginSpec(this.pluginName!, this.#chroot ?? "");
      this.managed?.removeRuntimeDir();
    }
    return report;
  }

  /**
   * Copy dockerd's and the plugin's logs to `/tmp/<root>-logs`, where a reader finds them after
   * teardown (TMPDIR where /tmp is read-only, as in the test VM); returns that dir.
   */
  keepLogs(): string {
    let keep = `/tmp/${path.basename(this.root)}-logs`;
    try {
      fs.mkdirSync(keep, { recursive: true });
    } catch {
      keep = path.join(os.tmpdir(), `${path.basename(this.root)}-logs`);
      fs.mkdirSync(keep, { recursive: true });
    }
    for (const f of ["dockerd.log", "plugin.log"]) {
      const src = path.join(this.root, f);
      if (fs.existsSync(src)) fs.copyFileSync(src, path.join(keep, f));
    }
    return keep;
  }

  /** Mount points under the temp root right now (not a chroot namespace's own, which teardown removes). */
  mounts(): string[] {
    const own = this.#namespaceInode === undefined ? [] : namespaceMounts(this.root);
    return mountsUnder(this.root).filter((m) => !own.includes(m));
  }
}
