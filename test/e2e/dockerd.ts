/** End-to-end helpers: a private dockerd (its own data-root, exec-root, socket and managed containerd). */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { E2EFailure, run, waitFor, type CommandResult, type RunOptions } from "./command.ts";
import { logTail } from "./host.ts";

/** The daemon and client of Debian 12's docker.io (20.10); /usr/local/bin/docker may be a newer client. */
export const DOCKERD_BIN = "/usr/sbin/dockerd";
export const DOCKER_BIN = "/usr/bin/docker";

// Start-up chatter of the managed containerd and gRPC that would push the interesting lines out of a tail.
const DOCKERD_LOG_NOISE = /module=grpc|msg="loading plugin|msg="skip loading plugin|msg=serving\.\.\./;

/** Options of {@link Dockerd}. */
export interface DockerdOptions {
  /** Private directory holding everything of this daemon. */
  root: string;
  /** `--storage-driver`: a built-in driver or a plugin name. */
  storageDriver: string;
  storageOpts?: string[];
  /** dockerd retries plugin discovery for ~16 s before giving up: wait longer than that. */
  startTimeoutMs?: number;
  stopTimeoutMs?: number;
  /** More daemon flags, after the fixed ones (e.g. `--userns-remap=default`). */
  extraArgs?: string[];
  /** What `daemon.json` holds (default `{}`), e.g. `{ features: { "containerd-snapshotter": true } }`. */
  daemonConfig?: Record<string, unknown>;
  /**
   * Maps the daemon's and each docker CLI command line (host paths of the binaries) to the one that
   * runs it, e.g. inside another distribution's tree and mount namespace. Default: as is.
   */
  wrap?: (argv: string[]) => string[];
}

/** How a stopped dockerd ended. */
export interface DaemonExit {
  code: number | null;
  signal: string | null;
  /** True when SIGTERM was not enough and SIGKILL ended it. */
  killed: boolean;
}

/**
 * A private dockerd, started as PROTOCOL.md's recipe says, talking on `<root>/docker.sock`.
 *
 * @example
 * ```ts
 * const d = new Dockerd({ root, storageDriver: "overlay2" });
 * await d.start();
 * const res = await d.docker("images");
 * await d.stop();
 * ```
 */
export class Dockerd {
  readonly root: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly socket: string;
  readonly pidFile: string;
  readonly logFile: string;
  readonly #opts: DockerdOptions;
  #child: ChildProcess | undefined;
  #exited: Promise<DaemonExit> | undefined;
  #starts = 0;

  constructor(opts: DockerdOptions) {
    this.#opts = opts;
    this.root = path.resolve(opts.root);
    this.dataRoot = path.join(this.root, "root");
    this.execRoot = path.join(this.root, "exec");
    this.socket = path.join(this.root, "docker.sock");
    this.pidFile = path.join(this.root, "docker.pid");
    this.logFile = path.join(this.root, "dockerd.log");
  }

  /** The storage driver name given to dockerd. */
  get storageDriver(): string {
    return this.#opts.storageDriver;
  }

  /** True while the daemon process lives. */
  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** The daemon's pid, while it runs. */
  get pid(): number | undefined {
    return this.running ? this.#child!.pid : undefined;
  }

  /** The command line, for messages. */
  argv(): string[] {
    const configFile = path.join(this.root, "daemon.json");
    return [
      DOCKERD_BIN,
      "--experimental",
      "--storage-driver", this.#opts.storageDriver,
      ...(this.#opts.storageOpts ?? []).flatMap((o) => ["--storage-opt", o]),
      "--data-root", this.dataRoot,
      "--exec-root", this.execRoot,
      "-H", `unix://${this.socket}`,
      "--pidfile", this.pidFile,
      // Keep the host's /etc/docker/daemon.json (if any) out of a private daemon.
      "--config-file", configFile,
      "--iptables=false",
      "--ip-masq=false",
      "--bridge=none",
      ...(this.#opts.extraArgs ?? []),
    ];
  }

  /** Start the daemon and wait until it answers; throws with the log tail when it exits or hangs. */
  async start(): Promise<void> {
    if (this.running) throw new E2EFailure("dockerd is already running");
    fs.mkdirSync(this.dataRoot, { recursive: true });
    fs.mkdirSync(this.execRoot, { recursive: true });
    fs.writeFileSync(path.join(this.root, "daemon.json"), JSON.stringify(this.#opts.daemonConfig ?? {}) + "\n");
    this.#starts++;
    const argv = this.#wrap(this.argv());
    fs.appendFileSync(this.logFile, `\n=== e2e: start #${this.#starts}: ${argv.join(" ")}\n`);
    const log = fs.openSync(this.logFile, "a");
    try {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", log, log] });
      this.#child = child;
      this.#exited = new Promise((resolve) => {
        child.on("exit", (code, signal) => resolve({ code, signal, killed: false }));
        child.on("error", () => resolve({ code: 127, signal: null, killed: false }));
      });
    } finally {
      fs.closeSync(log);
    }
    const timeoutMs = this.#opts.startTimeoutMs ?? 60_000;
    await waitFor(
      async () => {
        if (!this.running) {
          throw new E2EFailure(`dockerd exited during start (${JSON.stringify(await this.#exited)})\n\n${this.logTail()}`);
        }
        return await this.ping();
      },
      { timeoutMs, intervalMs: 250, message: "dockerd did not answer /_ping", context: () => this.logTail() },
    );
  }

  /** True when the API answers GET /_ping. */
  async ping(): Promise<boolean> {
    try {
      const res = await fetch("http://localhost/_ping", { unix: this.socket, signal: AbortSignal.timeout(2000) });
      return res.ok;
    } catch {
      return false;
    }
  }

  /** SIGTERM (the daemon stops containers, then calls the driver's Cleanup) and wait; SIGKILL after the limit. */
  async stop(timeoutMs = this.#opts.stopTimeoutMs ?? 60_000): Promise<DaemonExit> {
    const child = this.#child;
    if (!child || !this.running) return (await this.#exited) ?? { code: null, signal: null, killed: false };
    child.kill("SIGTERM");
    const timer = new Promise<undefined>((r) => setTimeout(r, timeoutMs, undefined));
    const exit = await Promise.race([this.#exited!, timer]);
    if (exit) return exit;
    child.kill("SIGKILL");
    return { ...(await this.#exited!), killed: true };
  }

  /** Stop, then start again on the same directories. */
  async restart(): Promise<DaemonExit> {
    const exit = await this.stop();
    await this.start();
    return exit;
  }

  /** The environment the docker CLI gets: this daemon, a private client config, no inherited context. */
  clientEnv(extra: Record<string, string> = {}): Record<string, string | undefined> {
    return {
      ...process.env,
      DOCKER_HOST: `unix://${this.socket}`,
      DOCKER_CONFIG: path.join(this.root, "client-config"),
      DOCKER_CONTEXT: undefined,
      DOCKER_TLS_VERIFY: undefined,
      DOCKER_CERT_PATH: undefined,
      DOCKER_BUILDKIT: undefined,
      ...extra,
    };
  }

  /** Run `docker ...args` against this daemon. */
  docker(...args: string[]): Promise<CommandResult> {
    return this.dockerWith({}, ...args);
  }

  /** Run `docker ...args` with extra environment or a different time limit. */
  dockerWith(opts: RunOptions & { extraEnv?: Record<string, string> }, ...args: string[]): Promise<CommandResult> {
    return run(this.#wrap([DOCKER_BIN, ...args]), { timeoutMs: 120_000, ...opts, env: this.clientEnv(opts.extraEnv) });
  }

  #wrap(argv: string[]): string[] {
    return this.#opts.wrap?.(argv) ?? argv;
  }

  /** The daemon log's tail, for failure messages. */
  logTail(lines = 60): string {
    return logTail(this.logFile, lines, "dockerd.log", DOCKERD_LOG_NOISE);
  }
}
