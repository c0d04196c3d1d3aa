/**
 * End-to-end helpers: strata as a managed (v2) plugin of a private dockerd. The plugin is created and
 * enabled on a daemon running a built-in driver (a daemon cannot start on a storage driver that does
 * not exist yet), which is then stopped; the caller restarts it on `--storage-driver NAME:TAG`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { check, E2EFailure, succeeded, waitFor } from "./command.ts";
import { Dockerd } from "./dockerd.ts";
import { listProcesses } from "./host.ts";
import { answersActivate } from "./plugin-process.ts";

/**
 * Where dockerd 20.10 puts a managed plugin's runtime directory (its socket, stdio fifos): a fixed
 * path, not under `--exec-root` (moby daemon/daemon_unix.go getPluginExecRoot). Inside the plugin this
 * directory is `/run/docker/plugins`.
 */
export const PLUGIN_EXEC_ROOT = "/run/docker/plugins";

/** What to install as a managed plugin. */
export interface ManagedPluginSpec {
  /** The plugin directory: `config.json` and `rootfs/` (compile.sh's `dist/plugin`). */
  dir: string;
  /** The plugin reference, `NAME:TAG`; also the `--storage-driver` value. */
  name: string;
  /** strata's driver, passed from the daemon's side as `--storage-opt strata.driver=NAME`. */
  driver: string;
  /** The built-in driver the daemon runs on while it creates the plugin; default vfs. */
  bootstrapDriver?: string;
}

/** What {@link ManagedPlugin.crash} saw. */
export interface PluginCrash {
  killedPid: number;
  /** The pid of the plugin process dockerd started in its place. */
  restartedPid: number;
}

/** How the plugin's daemon runs when not on the host as it is (dockerd 26 from a chroot). */
export interface ManagedPluginDaemon {
  /** Wraps every dockerd and docker command (into the chroot's mount namespace). */
  wrap?: (argv: string[]) => string[];
  /** More dockerd flags, for the bootstrap daemon too. */
  extraArgs?: string[];
  /** Where the host sees the daemon's /run/docker/plugins (default: that path itself). */
  execRoot?: string;
}

/**
 * One managed plugin of a private daemon: install it, find its process, socket and propagated mount.
 *
 * @example
 * ```ts
 * const plugin = new ManagedPlugin({ dir: "dist/plugin", name: "strata:0.1.0", driver: "vfs" }, root);
 * await plugin.install();               // create + enable on a vfs daemon, then stop that daemon
 * // start dockerd with --storage-driver strata:0.1.0 on the same root
 * await plugin.crash();                 // SIGKILL; dockerd restarts it
 * ```
 */
export class ManagedPlugin {
  readonly spec: ManagedPluginSpec;
  readonly root: string;
  #id: string | undefined;
  #daemon: ManagedPluginDaemon;

  constructor(spec: ManagedPluginSpec, root: string, daemon: ManagedPluginDaemon = {}) {
    this.spec = spec;
    this.root = path.resolve(root);
    this.#daemon = daemon;
  }

  /** The plugin id dockerd gave it (known after {@link install}). */
  get id(): string {
    if (!this.#id) throw new E2EFailure("The managed plugin is not installed yet");
    return this.#id;
  }

  /** The plugin's directory under the data-root: `config.json`, `rootfs/`, `propagated-mount/`. */
  get pluginDir(): string {
    return path.join(this.root, "root", "plugins", this.id);
  }

  /** The host side of the plugin's `propagatedMount` (`/data` inside): where every layer lives. */
  get propagatedMount(): string {
    return path.join(this.pluginDir, "propagated-mount");
  }

  /** The plugin's socket as dockerd dials it. */
  get socket(): string {
    return path.join(this.#daemon.execRoot ?? PLUGIN_EXEC_ROOT, this.id, "strata.sock");
  }

  /**
   * Create and enable the plugin on a daemon (same root) running the bootstrap driver, then stop it.
   * Throws with the daemon's log when a step fails.
   */
  async install(): Promise<void> {
    const daemon = new Dockerd({
      root: this.root, storageDriver: this.spec.bootstrapDriver ?? "vfs", wrap: this.#daemon.wrap, extraArgs: this.#daemon.extraArgs,
    });
    const logs = () => daemon.logTail();
    await daemon.start();
    try {
      succeeded(await daemon.dockerWith({ timeoutMs: 300_000 }, "plugin", "create", this.spec.name, this.spec.dir), logs);
      succeeded(await daemon.docker("plugin", "enable", this.spec.name), logs);
      this.#id = succeeded(await daemon.docker("plugin", "inspect", "--format", "{{.Id}}", this.spec.name), logs).trim();
      check(/^[0-9a-f]{64}$/.test(this.#id), `docker plugin inspect printed no plugin id`, this.#id, logs);
      check(this.pid() !== undefined, `The plugin ${this.spec.name} is enabled but no plugin process runs`, "", logs);
    } finally {
      const exit = await daemon.stop();
      if (exit.killed || exit.code !== 0) throw new E2EFailure(`The bootstrap dockerd did not stop cleanly: ${JSON.stringify(exit)}\n\n${logs()}`);
    }
    check(this.pid() === undefined, "The plugin process outlived the daemon that started it", "", logs);
  }

  /**
   * The plugin's process: the child of the containerd shim that runs container `id` in the
   * `plugins.moby` namespace of this root's containerd.
   */
  pid(): number | undefined {
    if (!this.#id) return undefined;
    const procs = listProcesses();
    const shims = procs.filter(
      (p) => p.cmdline.includes(`-namespace plugins.moby -id ${this.#id}`) && p.cmdline.includes(`${this.root}/`),
    );
    const shimPids = new Set(shims.map((p) => p.pid));
    return procs.find((p) => shimPids.has(p.ppid) && p.cmdline.startsWith("/strata "))?.pid;
  }

  /**
   * SIGKILL the plugin process as a crash would, and wait until dockerd has started a new one (it
   * restarts an enabled plugin that exits) and that one answers on the socket.
   */
  async crash(timeoutMs = 60_000, context?: () => string): Promise<PluginCrash> {
    const killedPid = this.pid();
    check(killedPid !== undefined, `No process of the managed plugin ${this.spec.name} runs`, "", context);
    process.kill(killedPid, "SIGKILL");
    let restartedPid: number | undefined;
    await waitFor(
      async () => {
        restartedPid = this.pid();
        return restartedPid !== undefined && restartedPid !== killedPid && (await answersActivate(this.socket));
      },
      { timeoutMs, intervalMs: 200, message: `dockerd did not restart the managed plugin ${this.spec.name} after SIGKILL`, context },
    );
    return { killedPid, restartedPid: restartedPid! };
  }

  /**
   * What the plugin printed since dockerd's last start, as dockerd logged it: a managed plugin's
   * stdout and stderr become `msg="…" plugin=<id>` lines of the daemon's log.
   */
  outputOfLastRun(dockerdLog: string): string[] {
    let text: string;
    try {
      text = fs.readFileSync(dockerdLog, "utf8");
    } catch {
      return [];
    }
    const lastStart = text.lastIndexOf("\n=== e2e: start #");
    return text
      .slice(Math.max(lastStart, 0))
      .split("\n")
      .filter((l) => l.includes(` plugin=${this.id}`))
      .map((l) => /msg="((?:[^"\\]|\\.)*)"/.exec(l)?.[1]?.replace(/\\(.)/g, "$1") ?? l);
  }

  /** Remove what a killed daemon leaves of the plugin outside the temp root (its runtime directory). */
  removeRuntimeDir(): void {
    if (this.#id) fs.rmSync(path.join(this.#daemon.execRoot ?? PLUGIN_EXEC_ROOT, this.#id), { recursive: true, force: true });
  }
}
