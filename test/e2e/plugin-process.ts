/** End-to-end helpers: the plugin as a child process (binary, Bun source or Deno source). */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import { E2EFailure, waitFor } from "./command.ts";
import { logTail } from "./host.ts";

/** Options of {@link PluginProcess}. */
export interface PluginProcessOptions {
  /** The full command, e.g. `["dist/strata", "serve", "--socket", sock, …]`. */
  argv: string[];
  /** The socket the plugin listens on. */
  socket: string;
  /** Its stdout and stderr are appended here. */
  logFile: string;
  cwd?: string;
  env?: Record<string, string>;
  /** Deno's first start compiles the source: allow for it. */
  readyTimeoutMs?: number;
  /** Names the process in messages; default "The plugin". */
  label?: string;
  /** When the process is ready, and that condition for a message; default: `socket` answers `/Plugin.Activate`. */
  ready?: { probe: () => Promise<boolean>; condition: string };
}

/** How a plugin process ended. */
export interface PluginExit {
  code: number | null;
  signal: string | null;
}

/**
 * The plugin process: start it, wait until it answers `/Plugin.Activate`, kill it, start it again.
 *
 * @example
 * ```ts
 * const p = new PluginProcess({ argv: ["dist/strata", "serve", "--socket", sock], socket: sock, logFile });
 * await p.start();
 * await p.kill("SIGKILL");
 * await p.start(); // the plugin restores its state itself
 * ```
 */
export class PluginProcess {
  readonly #opts: PluginProcessOptions;
  #child: ChildProcess | undefined;
  #exited: Promise<PluginExit> | undefined;
  #starts = 0;

  constructor(opts: PluginProcessOptions) {
    this.#opts = opts;
  }

  /** The log file holding the plugin's stderr. */
  get logFile(): string {
    return this.#opts.logFile;
  }

  /** True while the process lives. */
  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** The process id, while it runs. */
  get pid(): number | undefined {
    return this.running ? this.#child!.pid : undefined;
  }

  /** Start the process and wait until it is ready (by default: its socket answers Activate); throws with the log when it is not. */
  async start(): Promise<void> {
    const label = this.#opts.label ?? "The plugin";
    if (this.running) throw new E2EFailure(`${label} is already running`);
    this.#starts++;
    fs.appendFileSync(this.logFile, `\n=== e2e: start #${this.#starts}: ${this.#opts.argv.join(" ")}\n`);
    const log = fs.openSync(this.logFile, "a");
    try {
      const child = spawn(this.#opts.argv[0]!, this.#opts.argv.slice(1), {
        cwd: this.#opts.cwd,
        env: { ...process.env, ...this.#opts.env },
        stdio: ["ignore", log, log],
      });
      this.#child = child;
      this.#exited = new Promise((resolve) => {
        child.on("exit", (code, signal) => resolve({ code, signal }));
        child.on("error", (err) => {
          fs.appendFileSync(this.logFile, `=== e2e: cannot start: ${err.message}\n`);
          resolve({ code: 127, signal: null });
        });
      });
    } finally {
      fs.closeSync(log);
    }
    await waitFor(
      async () => {
        if (!this.running) {
          throw new E2EFailure(`${label} exited during start (${JSON.stringify(await this.#exited)})\n\n${this.logTail()}`);
        }
        return await (this.#opts.ready?.probe() ?? this.activates());
      },
      {
        timeoutMs: this.#opts.readyTimeoutMs ?? 60_000,
        intervalMs: 100,
        message: `${label} did not ${this.#opts.ready?.condition ?? `answer /Plugin.Activate on ${this.#opts.socket}`}`,
        context: () => this.logTail(),
      },
    );
  }

  /**
   * True when the socket answers Activate as dockerd expects. A socket file alone proves nothing:
   * a SIGKILLed plugin leaves a stale one behind.
   */
  activates(): Promise<boolean> {
    return answersActivate(this.#opts.socket);
  }

  /** Send `signal` and wait for the exit (SIGKILL after `timeoutMs` if it lingers). */
  async kill(signal: NodeJS.Signals = "SIGKILL", timeoutMs = 15_000): Promise<PluginExit & { forced: boolean }> {
    const child = this.#child;
    if (!child || !this.running) return { ...((await this.#exited) ?? { code: null, signal: null }), forced: false };
    child.kill(signal);
    const timer = new Promise<undefined>((r) => setTimeout(r, timeoutMs, undefined));
    const exit = await Promise.race([this.#exited!, timer]);
    if (exit) return { ...exit, forced: false };
    child.kill("SIGKILL");
    return { ...(await this.#exited!), forced: true };
  }

  /** Graceful stop: SIGTERM, then SIGKILL after `timeoutMs`. */
  stop(timeoutMs = 15_000): Promise<PluginExit & { forced: boolean }> {
    return this.kill("SIGTERM", timeoutMs);
  }

  /** SIGKILL (as a crash would) and start again. */
  async restart(): Promise<void> {
    await this.kill("SIGKILL");
    await this.start();
  }

  /** The plugin log's tail, for failure messages. */
  logTail(lines = 60): string {
    return logTail(this.logFile, lines, "plugin log");
  }
}

/** True when `socket` answers `/Plugin.Activate` as a GraphDriver plugin (v1 or managed). */
export async function answersActivate(socket: string): Promise<boolean> {
  try {
    const res = await fetch("http://localhost/Plugin.Activate", { method: "POST", unix: socket, signal: AbortSignal.timeout(2000) });
    const body = (await res.json()) as { Implements?: string[] };
    return res.ok && (body.Implements ?? []).includes("GraphDriver");
  } catch {
    return false;
  }
}
