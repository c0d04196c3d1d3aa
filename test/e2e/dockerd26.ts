/**
 * End-to-end harness: Docker's containerd image store on strata's snapshotter. dockerd 26.1 and
 * containerd 1.7 come from Debian 13 (`scripts/trixie-chroot.sh`: trixie's runc needs glibc 2.38, the
 * host has 2.36), so they run chrooted into that tree, in a private mount namespace that sees the
 * instance dir at the same path; strata and the test run on the host.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { ContainerdEnv, PROXY_SNAPSHOTTER, type ContainerdStopReport, type StrataSnapshotterCommand } from "./containerd.ts";
import { Dockerd, type DaemonExit } from "./dockerd.ts";
import { TRIXIE_ROOT, inTrixie, killNamespace, makeTrixieNamespace } from "./trixie-ns.ts";

export { TRIXIE_ROOT, inTrixie, processesInNamespace } from "./trixie-ns.ts";

// Written by scripts/trixie-chroot.sh once the tree is complete.
const TRIXIE_MARKER = ".strata-trixie-complete";

/** What {@link Dockerd26Env.stop} found and did. */
export interface Dockerd26StopReport {
  dockerdExit?: DaemonExit;
  containerd?: ContainerdStopReport;
  /** Processes still in the private mount namespace after everything stopped, SIGKILLed. */
  namespaceLeftovers: string[];
}

/**
 * One instance dir: strata's root and socket, containerd's root, state, config and socket, and
 * `docker/` with dockerd's data-root, exec-root, socket and daemon.json.
 *
 * @example
 * ```ts
 * const env = await Dockerd26Env.create({ command: ["dist/strata"], driver: "overlay" });
 * await env.start();
 * await env.dockerd.docker("info");
 * await env.stop();
 * ```
 */
export class Dockerd26Env {
  readonly containerd: ContainerdEnv;
  readonly dockerd: Dockerd;
  readonly chroot: string;
  #namespaceInode: number | undefined;
  #stopped: Promise<Dockerd26StopReport> | undefined;

  private constructor(containerd: ContainerdEnv, chroot: string) {
    this.containerd = containerd;
    this.chroot = chroot;
    const ns = containerd.namespace;
    this.dockerd = new Dockerd({
      root: path.join(containerd.root, "docker"),
      storageDriver: PROXY_SNAPSHOTTER,
      daemonConfig: { features: { "containerd-snapshotter": true } },
      extraArgs: [
        "--containerd", containerd.socket,
        // The instance dir's name as containerd namespace and cgroup parent: ContainerdEnv's teardown
        // then finds the containers' cgroups (`/<namespace>/<id>`) on the host's cgroupfs.
        "--containerd-namespace", ns,
        "--containerd-plugins-namespace", `${ns}-plugins`,
        "--cgroup-parent", `/${ns}`,
        "--exec-opt", "native.cgroupdriver=cgroupfs",
        "--ip6tables=false",
      ],
      wrap: (argv) => inTrixie(containerd.root, argv),
    });
  }

  /** Reap abandoned instance dirs, make this one and the daemons' configs; nothing runs yet. */
  static async create(strata: StrataSnapshotterCommand, chroot = TRIXIE_ROOT): Promise<Dockerd26Env> {
    const containerd = await ContainerdEnv.create({ strata }, { wrap: (argv, root) => inTrixie(root, argv) });
    return new Dockerd26Env(containerd, chroot);
  }

  /** The instance dir. */
  get root(): string {
    return this.containerd.root;
  }

  /** Make the mount namespace, then start strata, containerd (which reaches strata) and dockerd. */
  async start(): Promise<void> {
    this.#namespaceInode = await makeTrixieNamespace(this.root, this.chroot);
    await this.containerd.start();
    await this.dockerd.start();
  }

  /** The daemons' and strata's log tails, for failure messages. */
  logs(lines = 40): string {
    return [this.dockerd.logTail(lines), this.containerd.logs(lines)].join("\n\n");
  }

  /** Copy every log to `/tmp/<root>-logs` before stop removes the instance dir; returns that dir. */
  keepLogs(): string {
    return this.containerd.keepLogs(["docker/dockerd.log", "docker/daemon.json"]);
  }

  /**
   * Stop dockerd (SIGTERM, bounded), then containerd and strata, kill what still runs from the
   * instance dir, unmount everything under it (the namespace file included), remove it, and SIGKILL
   * anything left in the namespace so it goes away with its mounts. Safe to call twice.
   */
  stop(): Promise<Dockerd26StopReport> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<Dockerd26StopReport> {
    const report: Dockerd26StopReport = { namespaceLeftovers: [] };
    report.dockerdExit = await this.dockerd.stop(60_000);
    report.containerd = await this.containerd.stop();
    if (this.#namespaceInode !== undefined) report.namespaceLeftovers = killNamespace(this.#namespaceInode);
    return report;
  }

  /** The private mount namespace's inode (as in `/proc/<pid>/ns/mnt`), once started. */
  get namespaceInode(): number | undefined {
    return this.#namespaceInode;
  }
}

/**
 * Why the dockerd 26 test cannot run here, or undefined when it can. Only what the user chose (not
 * opting in, not root) is a reason to skip; a missing chroot is a failure for the caller to report.
 */
export function dockerd26SkipReason(): string | undefined {
  if (process.env.STRATA_E2E !== "1") return "end-to-end tests are opt-in: set STRATA_E2E=1 (needs root and the trixie chroot)";
  if (process.getuid?.() !== 0) return "end-to-end tests need root (chroot, mount namespaces, mounts)";
  return undefined;
}

/** What is missing for the dockerd 26 test on a host that should run it, or undefined when nothing is. */
export function dockerd26MissingReason(chroot = TRIXIE_ROOT): string | undefined {
  if (!fs.existsSync(path.join(chroot, TRIXIE_MARKER))) {
    return `${chroot} is not a complete trixie chroot: run bash scripts/trixie-chroot.sh${chroot === TRIXIE_ROOT ? "" : ` ${chroot}`}`;
  }
  for (const bin of ["/bin/busybox", "/usr/bin/nsenter", "/usr/bin/unshare"]) {
    if (!fs.existsSync(bin)) return `${bin} is missing: run scripts/install-test-deps.sh`;
  }
  return undefined;
}

