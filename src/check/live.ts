/**
 * Which running strata processes serve a store: `strata check` works on a store no strata is
 * using. There is no store lock to take, so the process table says: every `strata serve` (its
 * Home is in its state dir's state.json) and `strata snapshotter` (its `--root`), their paths read
 * through `/proc/<pid>/root` (a managed plugin sees its own filesystem) and compared by device and
 * inode, so symlinks and mount namespaces cannot hide a match.
 */
import { readFileSync, readdirSync, readlinkSync, statSync } from "node:fs";
import * as path from "node:path";
import { DEFAULTS, SNAPSHOTTER_DEFAULTS } from "../cli/args.ts";
import { STATE_FILE } from "../graphdriver/plugin.ts";

/** A running strata process and the store directories it serves. */
export interface LiveServer {
  pid: number;
  command: "serve" | "snapshotter";
  /** The directories it keeps stores in, as that process names them. */
  stores: string[];
}

/** The value of `--name X` or `--name=X` in `argv`, or `fallback`. */
function _flag(argv: readonly string[], name: string, fallback: string): string {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === name && i + 1 < argv.length) return argv[i + 1];
    if (argv[i].startsWith(`${name}=`)) return argv[i].slice(name.length + 1);
  }
  return fallback;
}

/** The strata command `argv` runs ("serve", "snapshotter"), or null when it is not a serving strata. */
export function strataCommand(argv: readonly string[]): "serve" | "snapshotter" | null {
  // The compiled binary (argv[0], any name starting with "strata"), or an entry point run by bun or deno.
  const program = /(^|\/)strata[^/]*$/.test(argv[0] ?? "") ? 0 : argv.findIndex((a) => /(^|\/)main\.(bun|deno)\.ts$/.test(a));
  if (program < 0) return null;
  const command = argv[program + 1];
  return command === "serve" || command === "snapshotter" ? command : null;
}

/** The store directories a strata process serves, resolved from its own view (`/proc/<pid>/root`, cwd). */
function _stores(pid: number, command: "serve" | "snapshotter", argv: readonly string[]): string[] {
  const root = `/proc/${pid}/root`;
  let cwd = "/";
  try {
    cwd = readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    // Without its cwd only absolute flags resolve; relative ones then resolve from "/".
  }
  const own = (p: string) => path.join(root, path.resolve(cwd, p));
  if (command === "snapshotter") {
    const dir = own(_flag(argv, "--root", SNAPSHOTTER_DEFAULTS.root));
    const subdirs = (() => {
      try {
        return readdirSync(dir).map((n) => path.join(dir, n));
      } catch {
        return [];
      }
    })();
    return [dir, ...subdirs];
  }
  try {
    const state = JSON.parse(readFileSync(path.join(own(_flag(argv, "--state-dir", DEFAULTS.stateDir)), STATE_FILE), "utf8"));
    return typeof state.Home === "string" ? [path.join(root, state.Home)] : [];
  } catch {
    // No saved Init: it serves no store yet.
    return [];
  }
}

/** Every strata serve or snapshotter running here (this process aside). */
export function liveServers(): LiveServer[] {
  const out: LiveServer[] = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a !== "");
    } catch {
      continue;
    }
    const command = strataCommand(argv);
    if (command !== null) out.push({ pid, command, stores: _stores(pid, command, argv) });
  }
  return out;
}

/**
 * The running strata serving `home`, or null: `home` is one of its stores (same device and inode).
 * @example
 * const live = servingProcess("/var/lib/docker/strata"); // { pid: 812, command: "serve", … } or null
 */
export function servingProcess(home: string, servers: readonly LiveServer[] = liveServers()): LiveServer | null {
  const id = (p: string) => {
    const st = statSync(p, { throwIfNoEntry: false });
    return st ? `${st.dev}:${st.ino}` : null;
  };
  const want = id(home);
  if (want === null) return null;
  return servers.find((s) => s.stores.some((p) => id(p) === want)) ?? null;
}
