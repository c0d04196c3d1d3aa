/**
 * End-to-end harness: dockerd 26.1 and containerd 1.7 from a Debian 13 chroot
 * (`scripts/trixie-chroot.sh`) on strata's snapshotter through Docker's containerd image store.
 *
 * trixie's runc needs glibc 2.38, so containerd, dockerd, their shims and the containers run inside
 * the chroot, in one private mount namespace that the instance dir is bind-mounted into at the same
 * path. strata (`dist/strata snapshotter`) runs on the host; the instance dir is a shared mount, so
 * whatever strata mounts under it later shows inside too.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { acceptsConnections, PROXY_SNAPSHOTTER } from "./containerd.ts";
import { check, describeResult, run, type CommandResult, type RunOptions } from "./command.ts";
import { REPO_ROOT } from "./harness.ts";
import { listProcesses, logTail, makeTempRoot, reapAbandonedRoots, removeTempRoot } from "./host.ts";
import { PluginProcess, type PluginExit } from "./plugin-process.ts";

/** Where `scripts/trixie-chroot.sh` builds the chroot by default. */
export const TRIXIE_ROOT = process.env.STRATA_TRIXIE_ROOT || "/var/cache/strata/trixie";
/** The file the script writes last: a tree without it is half made. */
export const TRIXIE_MARKER = ".strata-trixie-complete";
/** The compiled strata. */
export const STRATA_BIN = path.join(REPO_ROOT, "dist", "strata");
/** The containerd namespace dockerd keeps its images, containers and snapshots in. */
export const MOBY_NAMESPACE = "moby";

// Plugin loading and gRPC chatter that would push the interesting lines out of a log tail.
const LOG_NOISE = /msg="loading plugin|msg="skip loading plugin|msg=serving\.\.\.|module=grpc/;

/** True when this host can run the dockerd 26 end-to-end test; otherwise the reason it cannot. */
export function dockerd26UnavailableReason(): string | undefined {
  if (process.env.STRATA_E2E !== "1") return "end-to-end tests are opt-in: set STRATA_E2E=1 (needs root and the trixie chroot)";
  if (process.getuid?.() !== 0) return "end-to-end tests need root (mount namespaces, chroot, containers)";
  if (!fs.existsSync(path.join(TRIXIE_ROOT, TRIXIE_MARKER))) return `no complete trixie chroot at ${TRIXIE_ROOT}: run scripts/trixie-chroot.sh`;
  if (!fs.existsSync(STRATA_BIN)) return `${STRATA_BIN} is not built: run ./compile.sh`;
  for (const bin of ["/bin/busybox", "/usr/bin/unshare", "/usr/bin/nsenter"]) if (!fs.existsSync(bin)) return `${bin} is missing`;
  return undefined;
}

/** Options of {@link Dockerd26Env.create}. */
export interface Dockerd26Options {
  /** strata's `--driver`. */
  driver: string;
  strataLogLevel?: string;
}

/** What {@link Dockerd26Env.stop} found and did. */
export interface Dockerd26StopReport {
  dockerdExit?: PluginExit & { forced: boolean };
  containerdExit?: PluginExit & { forced: boolean };
  strataExit?: PluginExit & { forced: boolean };
  /** Processes still running from the instance dir (shims, containers) that had to be SIGKILLed. */
  killed: string[];
  /** Processes still in the private mount namespace after that, SIGKILLed. */
  namespaceKilled: string[];
  /** Host mount points under the instance dir unmounted by the teardown (its own bind mount included). */
  unmounted: string[];
}

/**
 * One instance dir: strata's root and socket; containerd's root, state, config and socket; dockerd's
 * data-root, exec-root, pidfile, daemon.json and socket.
 *
 * @example
 * ```ts
 * const env = await Dockerd26Env.create({ driver: "overlay" });
 * await env.start();
 * await env.docker("import", tar, "e2e-busybox:base");
 * await env.stop();
 * ```
 */
export class Dockerd26Env {
  readonly root: string;
  readonly chroot = TRIXIE_ROOT;
  readonly strataSocket: string;
  readonly strataRoot: string;
  readonly containerdSocket: string;
  readonly dockerSocket: string;
  /** A cgroup parent of this run only, so its containers cannot meet another daemon's. */
  readonly cgroupParent: string;
  readonly strata: PluginProcess;
  readonly #containerd: PluginProcess;
  #dockerd: PluginProcess | undefined;
  /** The private mount namespace (`mnt:[inode]`), once containerd made it. */
  #namespace: string | undefined;
  #stopped: Promise<Dockerd26StopReport> | undefined;

  private constructor(opts: Dockerd26Options) {
    this.root = makeTempRoot();
    const at = (...p: string[]) => path.join(this.root, ...p);
    this.strataSocket = at("strata.sock");
    this.strataRoot = at("strata-root");
    this.containerdSocket = at("containerd.sock");
    this.dockerSocket = at("docker.sock");
    this.cgroupParent = `/${path.basename(this.root)}`;
    fs.writeFileSync(at("containerd.toml"), this.#containerdConfig());
    // The features entry switches dockerd 26 to the containerd image store; the rest stays on flags.
    fs.writeFileSync(at("daemon.json"), `${JSON.stringify({ features: { "containerd-snapshotter": true } })}\n`);
    this.strata = new PluginProcess({
      argv: [STRATA_BIN, "snapshotter", "--driver", opts.driver, "--socket", this.strataSocket, "--root", this.strataRoot, "--log-level", opts.strataLogLevel ?? "info"],
      socket: this.strataSocket,
      logFile: at("strata.log"),
      cwd: REPO_ROOT,
      label: "The strata snapshotter",
      ready: { probe: () => acceptsConnections(this.strataSocket), condition: `accept connections on ${this.strataSocket}` },
    });
    // unshare execs sh, sh execs chroot, chroot execs containerd: one pid, whose namespace dockerd joins.
    const script = [
      "set -e",
      // runc makes the container's / rslave: inside a plain chroot / is no mount point and that is EINVAL.
      'mount --bind "$2" "$2"',
      'mount --rbind "$1" "$2$1"',
      'mount -t proc proc "$2/proc"',
      'mount --rbind /sys "$2/sys"',
      'mount --rbind /dev "$2/dev"',
      // runc's state and the shims' sockets (/run/containerd) then vanish with the namespace.
      'mount -t tmpfs -o mode=755 tmpfs "$2/run"',
      'exec chroot "$2" containerd --config "$1/containerd.toml" --log-level debug',
    ].join("\n");
    this.#containerd = new PluginProcess({
      argv: ["unshare", "--mount", "--propagation", "slave", "--", "sh", "-c", script, "sh", this.root, this.chroot],
      socket: this.containerdSocket,
      logFile: at("containerd.log"),
      label: "containerd 1.7 (trixie chroot)",
      readyTimeoutMs: 30_000,
      ready: { probe: async () => (await acceptsConnections(this.containerdSocket)) && (await this.ctr("version")).code === 0, condition: `answer ctr version on ${this.containerdSocket}` },
    });
  }

  /** Reap what crashed earlier runs left, make the instance dir and its configs; nothing runs yet. */
  static async create(opts: Dockerd26Options): Promise<Dockerd26Env> {
    const reaped = await reapAbandonedRoots();
    if (reaped.length) console.error(`[e2e] removed abandoned temp roots: ${reaped.join(", ")}`);
    return new Dockerd26Env(opts);
  }

  /** Make the instance dir a shared mount and its mount point in the chroot; start strata, containerd, dockerd. */
  async start(): Promise<void> {
    for (const argv of [["mount", "--bind", this.root, this.root], ["mount", "--make-rshared", this.root]]) {
      const res = await run(argv);
      check(res.code === 0, `Cannot make ${this.root} a shared mount`, describeResult(res));
    }
    fs.mkdirSync(this.chroot + this.root, { recursive: true });
    await this.strata.start();
    await this.#containerd.start();
    this.#namespace = fs.readlinkSync(`/proc/${this.#containerd.pid}/ns/mnt`);
    check(this.#namespace !== fs.readlinkSync("/proc/self/ns/mnt"), "containerd runs in the host's mount namespace", "", () => this.logs());
    const plugins = await this.ctr("plugins", "ls");
    check(
      new RegExp(`^io\\.containerd\\.snapshotter\\.v1\\s+${PROXY_SNAPSHOTTER}\\s+.*\\bok\\s*$`, "m").test(plugins.stdout),
      `containerd does not list the ${PROXY_SNAPSHOTTER} proxy snapshotter as ok`,
      describeResult(plugins),
      () => this.logs(),
    );
    await this.startDockerd();
  }

  /** Start dockerd in containerd's namespace and chroot; wait until it answers /_ping. */
  async startDockerd(): Promise<void> {
    const at = (...p: string[]) => path.join(this.root, ...p);
    this.#dockerd ??= new PluginProcess({
      argv: [
        ...this.#enter(),
        "dockerd",
        "--config-file", at("daemon.json"),
        "--containerd", this.containerdSocket,
        "--storage-driver", PROXY_SNAPSHOTTER,
        "--data-root", at("docker"),
        "--exec-root", at("docker-exec"),
        "--pidfile", at("docker.pid"),
        "-H", `unix://${this.dockerSocket}`,
        "--cgroup-parent", this.cgroupParent,
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--userland-proxy=false",
      ],
      socket: this.dockerSocket,
      logFile: at("dockerd.log"),
      label: "dockerd 26 (trixie chroot)",
      readyTimeoutMs: 60_000,
      ready: { probe: () => this.#ping(), condition: `answer /_ping on ${this.dockerSocket}` },
    });
    await this.#dockerd.start();
  }

  /** SIGTERM dockerd (it stops its containers) and wait. */
  async stopDockerd(): Promise<PluginExit & { forced: boolean }> {
    return (await this.#dockerd?.stop(60_000)) ?? { code: null, signal: null, forced: false };
  }

  /** Run `argv` inside the chroot, in the daemons' mount namespace. */
  inside(argv: string[], opts: RunOptions = {}): Promise<CommandResult> {
    return run([...this.#enter(), ...argv], { timeoutMs: 120_000, ...opts });
  }

  /** The chroot's `docker` against this dockerd, with a private client config. */
  docker(...args: string[]): Promise<CommandResult> {
    return this.dockerWith({}, ...args);
  }

  /** `docker ...args` with a different time limit or more environment. */
  dockerWith(opts: RunOptions & { extraEnv?: Record<string, string> }, ...args: string[]): Promise<CommandResult> {
    const env = { ...process.env, HOME: "/root", DOCKER_CONFIG: path.join(this.root, "docker-client"), DOCKER_HOST: undefined, DOCKER_CONTEXT: undefined, ...opts.extraEnv };
    return this.inside(["docker", "-H", `unix://${this.dockerSocket}`, ...args], { ...opts, env });
  }

  /** The chroot's `ctr` against this containerd, in moby's namespace. */
  ctr(...args: string[]): Promise<CommandResult> {
    return this.ctrIn(MOBY_NAMESPACE, ...args);
  }

  /** `ctr -n namespace ...args`. */
  ctrIn(namespace: string, ...args: string[]): Promise<CommandResult> {
    return this.inside(["ctr", "--address", this.containerdSocket, "--namespace", namespace, ...args], { timeoutMs: 60_000 });
  }

  /** dockerd's, containerd's and strata's log tails, for failure messages. */
  logs(lines = 40): string {
    return [
      logTail(path.join(this.root, "dockerd.log"), lines, "dockerd.log", LOG_NOISE),
      logTail(path.join(this.root, "containerd.log"), lines, "containerd.log", LOG_NOISE),
      this.strata.logTail(lines),
    ].join("\n\n");
  }

  /** Copy the logs and configs to `/tmp/<root>-logs`, where a reader finds them after stop; returns that dir. */
  keepLogs(): string {
    const keep = `/tmp/${path.basename(this.root)}-logs`;
    fs.mkdirSync(keep, { recursive: true });
    for (const f of ["dockerd.log", "containerd.log", "strata.log", "containerd.toml", "daemon.json"]) {
      const src = path.join(this.root, f);
      if (fs.existsSync(src)) fs.copyFileSync(src, path.join(keep, f));
    }
    return keep;
  }

  /**
   * Stop dockerd, containerd, then strata; kill what still runs from the instance dir or in the private
   * namespace (which takes the chroot's bind mounts with it); unmount the host side; remove the instance
   * dir, its mount point in the chroot and the cgroup parent. Safe to call twice.
   */
  stop(): Promise<Dockerd26StopReport> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<Dockerd26StopReport> {
    const report: Dockerd26StopReport = { killed: [], namespaceKilled: [], unmounted: [] };
    report.dockerdExit = await this.#dockerd?.stop(60_000);
    report.containerdExit = await this.#containerd.stop(20_000);
    report.strataExit = await this.strata.stop(15_000);
    const removed = await removeTempRoot(this.root);
    report.killed = removed.killed;
    report.unmounted = removed.unmounted;
    report.namespaceKilled = await this.#killNamespace();
    fs.rmSync(this.chroot + this.root, { recursive: true, force: true });
    _rmCgroup(path.join("/sys/fs/cgroup", this.cgroupParent));
    return report;
  }

  // Anything left in the namespace (a container whose shim died) keeps it, and its mounts, alive.
  async #killNamespace(): Promise<string[]> {
    if (!this.#namespace) return [];
    const left = listProcesses().filter((p) => {
      try {
        return fs.readlinkSync(`/proc/${p.pid}/ns/mnt`) === this.#namespace;
      } catch {
        return false;
      }
    });
    for (const p of left) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    if (left.length) await new Promise((r) => setTimeout(r, 500));
    return left.map((p) => `${p.pid} ${p.cmdline}`);
  }

  /** The prefix that runs a command in the daemons' namespace and the chroot. */
  #enter(): string[] {
    const pid = this.#containerd.pid;
    if (pid === undefined) throw new Error("containerd is not running: nothing to enter");
    return ["nsenter", `--mount=/proc/${pid}/ns/mnt`, "--", "chroot", this.chroot];
  }

  async #ping(): Promise<boolean> {
    try {
      const res = await fetch("http://localhost/_ping", { unix: this.dockerSocket, signal: AbortSignal.timeout(2000) });
      return res.ok;
    } catch {
      return false;
    }
  }

  #containerdConfig(): string {
    const q = (s: string) => JSON.stringify(s);
    const at = (name: string) => q(path.join(this.root, name));
    return [
      "version = 2",
      `root = ${at("containerd-root")}`,
      `state = ${at("containerd-state")}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "",
      "[grpc]",
      `  address = ${q(this.containerdSocket)}`,
      "[ttrpc]",
      `  address = ${q(this.containerdSocket + ".ttrpc")}`,
      "[debug]",
      `  address = ${at("containerd-debug.sock")}`,
      "[metrics]",
      '  address = ""',
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${at("containerd-opt")}`,
      "",
      `[proxy_plugins.${PROXY_SNAPSHOTTER}]`,
      '  type = "snapshot"',
      `  address = ${q(this.strataSocket)}`,
      "",
    ].join("\n");
  }
}

// cgroupfs removes a directory with rmdir alone once it holds no process; children first.
function _rmCgroup(dir: string): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory()) _rmCgroup(path.join(dir, e.name));
  try {
    fs.rmdirSync(dir);
  } catch {
    // Still holding a process the teardown could not kill: nothing more to do here.
  }
}
