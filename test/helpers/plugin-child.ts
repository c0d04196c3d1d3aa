/** Test helpers: `strata serve` from source as a child process, spoken to as dockerd does. */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { rawCall, type RawResponse } from "./raw-http.ts";

const REPO = path.resolve(import.meta.dir, "../..");
const BUN = path.join(REPO, "node_modules/.bin/bun");

/** How a child process ended. */
export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What {@link PluginChild.start} needs. */
export interface PluginChildOptions {
  driver: string;
  socket: string;
  stateDir: string;
  /** stdout and stderr are appended here. */
  logFile: string;
  /** Added to the environment; a key set to undefined is removed from it. */
  env?: Record<string, string | undefined>;
  /** The command before `serve` (default: Bun on the source), run in the repository. */
  command?: readonly string[];
}

/** The ways to run strata, by name: the command before its subcommand (also the e2e variants'). */
export const PLUGIN_COMMANDS = {
  bun: [BUN, "src/main.bun.ts"],
  binary: [path.join(REPO, "dist/strata")],
  deno: [path.join(REPO, "node_modules/.bin/deno"), "run", "-A", "src/main.deno.ts"],
} as const;

/**
 * The plugin run from source (`bun src/main.bun.ts serve …`, or `command`), ready once it answers Activate.
 * @example
 * const p = await PluginChild.start({ driver: "vfs", socket, stateDir, logFile });
 * await p.call("GraphDriver.Init", { Home: home });
 * await p.stop();
 */
export class PluginChild {
  readonly #child: ChildProcess;
  readonly #opts: PluginChildOptions;
  /** Settles when the process has exited, however it ended. */
  readonly exited: Promise<ChildExit>;

  private constructor(child: ChildProcess, opts: PluginChildOptions) {
    this.#child = child;
    this.#opts = opts;
    this.exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  }

  /** Spawn the plugin and wait (up to `timeoutMs`) until it answers `/Plugin.Activate`. */
  static async start(opts: PluginChildOptions, timeoutMs = 20_000): Promise<PluginChild> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, ...opts.env })) if (v !== undefined) env[k] = v;
    const log = fs.openSync(opts.logFile, "a");
    const [program, ...args] = opts.command ?? PLUGIN_COMMANDS.bun;
    const argv = [...args, "serve", "--driver", opts.driver, "--socket", opts.socket, "--state-dir", opts.stateDir, "--log-level", "debug"];
    let child: ChildProcess;
    try {
      child = spawn(program!, argv, { cwd: REPO, env, stdio: ["ignore", log, log] });
    } finally {
      fs.closeSync(log);
    }
    const plugin = new PluginChild(child, opts);
    let gone: ChildExit | null = null;
    void plugin.exited.then((e) => (gone = e));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (gone) throw new Error(`The plugin exited during start (${JSON.stringify(gone)})\n${plugin.logTail()}`);
      const res = await rawCall(opts.socket, "/Plugin.Activate", null).catch(() => null);
      if (res?.status === 200) return plugin;
      if (Date.now() > deadline) {
        await plugin.stop();
        throw new Error(`The plugin did not answer Activate within ${timeoutMs} ms\n${plugin.logTail()}`);
      }
      await Bun.sleep(50);
    }
  }

  /** POST a JSON body (a newline after it, as Go's encoder writes) to `/<method>`. */
  call(method: string, body: unknown): Promise<RawResponse> {
    return rawCall(this.#opts.socket, `/${method}`, `${JSON.stringify(body)}\n`);
  }

  /** ApplyDiff with `tar` as the chunked body dockerd streams. */
  applyDiff(id: string, parent: string, tar: Uint8Array): Promise<RawResponse> {
    const query = `id=${encodeURIComponent(id)}&parent=${encodeURIComponent(parent)}`;
    return rawCall(this.#opts.socket, `/GraphDriver.ApplyDiff?${query}`, Buffer.from(tar), { chunks: Math.max(1, Math.ceil(tar.byteLength / 25_000)) });
  }

  /** `call` that throws unless the answer is 200 with an empty Err; returns the parsed body. */
  async ok(method: string, body: unknown): Promise<Record<string, unknown>> {
    return _mustSucceed(method, await this.call(method, body), this);
  }

  /** `applyDiff` that throws unless it succeeded. */
  async okApply(id: string, parent: string, tar: Uint8Array): Promise<Record<string, unknown>> {
    return _mustSucceed(`ApplyDiff ${id}`, await this.applyDiff(id, parent, tar), this);
  }

  /** SIGTERM (the plugin's graceful stop) and wait for the end. */
  async terminate(): Promise<ChildExit> {
    this.#child.kill("SIGTERM");
    return await this.exited;
  }

  /** SIGKILL the process if it still runs, and wait for its end. */
  async stop(): Promise<ChildExit> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill("SIGKILL");
    return await this.exited;
  }

  /** The last lines of the plugin's log, for failure messages. */
  logTail(lines = 40): string {
    const text = fs.existsSync(this.#opts.logFile) ? fs.readFileSync(this.#opts.logFile, "utf8") : "";
    return `--- plugin log (${this.#opts.logFile}) ---\n${text.split("\n").slice(-lines).join("\n")}`;
  }
}

function _mustSucceed(what: string, res: RawResponse, plugin: PluginChild): Record<string, unknown> {
  const body = JSON.parse(res.body.toString() || "{}") as Record<string, unknown>;
  if (res.status !== 200 || (body.Err ?? "") !== "") {
    throw new Error(`${what} failed: ${res.status} ${res.body.toString()}\n${plugin.logTail()}`);
  }
  return body;
}
