/**
 * The command line as data: `parseCommand` turns argv into what to run, or the reason it cannot,
 * touching nothing. `src/cli.ts` runs the result.
 */
import { parseArgs } from "node:util";
import { LOG_LEVELS, type LogLevel } from "../core/log.ts";
import { parseListenAddress, type ListenAddress } from "../graphdriver/serve/address.ts";

/** The internal command install.sh runs (not in --help). */
export const DAEMON_JSON_COMMAND = "install-merge-daemon-json";

/** Defaults of `strata serve` and `strata status`. */
export const DEFAULTS = {
  driver: "auto",
  socket: "/run/docker/plugins/strata.sock",
  stateDir: "/var/lib/strata",
  logLevel: "info" as LogLevel,
};

/** Defaults of `strata snapshotter`. */
export const SNAPSHOTTER_DEFAULTS = {
  driver: "auto",
  socket: "/run/strata/snapshotter.sock",
  root: "/var/lib/strata/snapshotter",
};

/** What argv asks for. */
export type Command =
  | { kind: "help"; exitCode: 0 | 2 }
  | { kind: "version" }
  | { kind: "daemon-json"; argv: string[] }
  | { kind: "status"; socket: string }
  | { kind: "serve"; driver: string; socket: string; address: ListenAddress; stateDir: string; level: LogLevel }
  | { kind: "snapshotter"; driver: string; socket: string; root: string; size: string; level: LogLevel }
  | { kind: "bad"; message: string };

/** The usage text; `drivers` are the registered driver names. */
export function usage(drivers: readonly string[]): string {
  const names = drivers.join("|");
  return `strata — a Docker storage (graph) driver plugin and containerd snapshotter

Usage:
  strata serve [--driver auto|${names}] [--socket PATH] [--state-dir DIR] [--log-level ${LOG_LEVELS.join("|")}]
  strata snapshotter [--driver auto|${names}] [--socket PATH] [--root DIR] [--size SIZE] [--log-level ${LOG_LEVELS.join("|")}]
  strata status [--socket PATH]
  strata version
  strata --help

serve options (dockerd's GraphDriver plugin protocol):
  --driver      storage driver when Init names none (strata.driver=NAME in --storage-opt wins); default ${DEFAULTS.driver}
  --socket      unix socket to listen on, or tcp://HOST:PORT on a loopback HOST only; default ${DEFAULTS.socket}
  --state-dir   where Init's arguments are kept across restarts; default ${DEFAULTS.stateDir}
  --log-level   default ${DEFAULTS.logLevel}

snapshotter options (containerd's proxy snapshotter over gRPC):
  --driver      storage driver; default ${SNAPSHOTTER_DEFAULTS.driver}
  --socket      unix socket to listen on; default ${SNAPSHOTTER_DEFAULTS.socket}
  --root        where snapshots and their records live; default ${SNAPSHOTTER_DEFAULTS.root}
  --size        size limit of every container's snapshot, e.g. 10G (overlay, btrfs; not of layers containerd unpacks);
                the label containerd.io/snapshot/strata.size on Prepare sets one snapshot's ("0": none)
  --log-level   default ${DEFAULTS.logLevel}

status: asks the plugin serving on --socket (default ${DEFAULTS.socket}) for its status

Then: dockerd --experimental --storage-driver strata
  or: [proxy_plugins.strata] type = "snapshot" address = "${SNAPSHOTTER_DEFAULTS.socket}" in containerd's config
`;
}

/**
 * Check a snapshotter root: mounts are handed out as `lowerdir=a:b,upperdir=…`, so a root holding
 * ":" or "," could not be named in them. Returns the problem, or null.
 */
export function checkRoot(root: string): string | null {
  if (!root.startsWith("/")) return `--root must be an absolute path (got "${root}")`;
  if (/[,:\0\\]/.test(root)) return `--root must not contain ",", ":" or "\\" (mount options could not name it): "${root}"`;
  return null;
}

/**
 * What `argv` (without the program) asks for.
 * @example
 * parseCommand(["serve", "--driver", "vfs"], ["overlay", "vfs"]); // { kind: "serve", driver: "vfs", … }
 */
export function parseCommand(argv: readonly string[], drivers: readonly string[]): Command {
  const [command, ...rest] = argv;
  if (command === undefined) return { kind: "help", exitCode: 2 };
  if (command === "--help" || command === "-h" || command === "help") return { kind: "help", exitCode: 0 };
  if (command === "version" || command === "--version") return { kind: "version" };
  if (command === DAEMON_JSON_COMMAND) return { kind: "daemon-json", argv: rest };
  const driverProblem = (d: string) => (d === "auto" || drivers.includes(d) ? null : `--driver must be auto or one of ${drivers.join(", ")}`);
  const levelProblem = (l: string) => ((LOG_LEVELS as readonly string[]).includes(l) ? null : `--log-level must be one of ${LOG_LEVELS.join(", ")}`);
  try {
    if (command === "status") {
      const { values } = parseArgs({ args: rest, strict: true, allowPositionals: false, options: { socket: { type: "string", default: DEFAULTS.socket } } });
      return { kind: "status", socket: values.socket };
    }
    if (command === "serve") {
      const { values } = parseArgs({
        args: rest, strict: true, allowPositionals: false,
        options: {
          driver: { type: "string", default: DEFAULTS.driver },
          socket: { type: "string", default: DEFAULTS.socket },
          "state-dir": { type: "string", default: DEFAULTS.stateDir },
          "log-level": { type: "string", default: DEFAULTS.logLevel },
        },
      });
      const problem = levelProblem(values["log-level"]) ?? driverProblem(values.driver);
      if (problem) return { kind: "bad", message: problem };
      const address = parseListenAddress(values.socket);
      return { kind: "serve", driver: values.driver, socket: values.socket, address, stateDir: values["state-dir"], level: values["log-level"] as LogLevel };
    }
    if (command === "snapshotter") {
      const { values } = parseArgs({
        args: rest, strict: true, allowPositionals: false,
        options: {
          driver: { type: "string", default: SNAPSHOTTER_DEFAULTS.driver },
          socket: { type: "string", default: SNAPSHOTTER_DEFAULTS.socket },
          root: { type: "string", default: SNAPSHOTTER_DEFAULTS.root },
          size: { type: "string", default: "" },
          "log-level": { type: "string", default: DEFAULTS.logLevel },
        },
      });
      const problem = levelProblem(values["log-level"]) ?? driverProblem(values.driver) ?? checkRoot(values.root) ??
        (values.socket.startsWith("/") ? null : `--socket must be an absolute path (got "${values.socket}")`);
      if (problem) return { kind: "bad", message: problem };
      return { kind: "snapshotter", driver: values.driver, socket: values.socket, root: values.root, size: values.size, level: values["log-level"] as LogLevel };
    }
  } catch (err) {
    return { kind: "bad", message: (err as Error).message };
  }
  return { kind: "bad", message: `unknown command "${command}"` };
}
