/**
 * The command line as data: `parseCommand` turns argv into what to run, or the reason it cannot,
 * touching nothing. `src/cli.ts` runs the result.
 */
import { parseArgs } from "node:util";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../core/log.ts";
import { type MetricsAddress, parseMetricsAddress } from "../core/metrics-server.ts";
import { parseListenAddress, type ListenAddress } from "../serve/address.ts";

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

/** Defaults of `strata doctor`. */
export const DOCTOR_DEFAULTS = {
  root: "/var/lib/docker/strata",
  dockerSocket: "/var/run/docker.sock",
};

/** What argv asks for. */
export type Command =
  | { kind: "help"; exitCode: 0 | 2 }
  | { kind: "version" }
  | { kind: "daemon-json"; argv: string[] }
  | { kind: "status"; socket: string }
  | { kind: "serve"; driver: string; socket: string; address: ListenAddress; stateDir: string; level: LogLevel; logFormat: LogFormat; metrics: MetricsAddress | null }
  | { kind: "snapshotter"; driver: string; socket: string; root: string; size: string; level: LogLevel; logFormat: LogFormat; metrics: MetricsAddress | null }
  | { kind: "doctor"; json: boolean; root: string; dockerSocket: string }
  | { kind: "check"; home: string; repair: boolean; json: boolean }
  | { kind: "bad"; message: string };

/** The usage text; `drivers` are the registered driver names. */
export function usage(drivers: readonly string[]): string {
  const names = drivers.join("|");
  return `strata — a Docker storage (graph) driver plugin and containerd snapshotter

Usage:
  strata serve [--driver auto|${names}] [--socket PATH] [--state-dir DIR] [--log-level ${LOG_LEVELS.join("|")}]
               [--log-format ${LOG_FORMATS.join("|")}] [--metrics unix:PATH|HOST:PORT]
  strata snapshotter [--driver auto|${names}] [--socket PATH] [--root DIR] [--size SIZE] [--log-level ${LOG_LEVELS.join("|")}]
                     [--log-format ${LOG_FORMATS.join("|")}] [--metrics unix:PATH|HOST:PORT]
  strata status [--socket PATH]
  strata doctor [--root DIR] [--docker-socket PATH] [--json]
  strata check HOME [--repair] [--json]
  strata version
  strata --help

serve options (dockerd's GraphDriver plugin protocol):
  --driver      storage driver when Init names none (strata.driver=NAME in --storage-opt wins); default ${DEFAULTS.driver}
  --socket      unix socket to listen on, or tcp://HOST:PORT on a loopback HOST only; default ${DEFAULTS.socket}
  --state-dir   where Init's arguments are kept across restarts; default ${DEFAULTS.stateDir}
  --log-level   default ${DEFAULTS.logLevel}
  --log-format  text (default) or json: one JSON object a line, the same fields
  --metrics     serve Prometheus metrics on GET /metrics: unix:/run/strata/metrics.sock, or 127.0.0.1:PORT (loopback only)

snapshotter options (containerd's proxy snapshotter over gRPC):
  --driver      storage driver; default ${SNAPSHOTTER_DEFAULTS.driver}
  --socket      unix socket to listen on; default ${SNAPSHOTTER_DEFAULTS.socket}
  --root        where snapshots and their records live; default ${SNAPSHOTTER_DEFAULTS.root}
  --size        size limit of every container's snapshot, e.g. 10G (overlay, btrfs; not of layers containerd unpacks);
                the label containerd.io/snapshot/strata.size on Prepare sets one snapshot's ("0": none)
  --log-level   default ${DEFAULTS.logLevel}
  --log-format  text (default) or json
  --metrics     as for serve

doctor: checks what this host offers strata (kernel, overlay, d_type, size limits, erofs, btrfs, user
  namespaces, which drivers init, the Docker daemon); one line per check, exit 1 when one fails
  --root          where the store would be (its filesystem is probed beside it); default ${DOCTOR_DEFAULTS.root}
  --docker-socket the daemon asked for its version; default ${DOCTOR_DEFAULTS.dockerSocket}

check: offline consistency check of a driver's store (a Home, or a snapshotter's ROOT/DRIVER); exit 1 when
  problems remain; refuses a store a running strata serves
  --repair      fix what is safe to fix (temp entries, dangling links, records of missing layers…) and say what

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
  const formatProblem = (f: string) => ((LOG_FORMATS as readonly string[]).includes(f) ? null : `--log-format must be one of ${LOG_FORMATS.join(", ")}`);
  const common = {
    "log-level": { type: "string", default: DEFAULTS.logLevel },
    "log-format": { type: "string", default: "text" },
    metrics: { type: "string", default: "" },
  } as const;
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
          ...common,
        },
      });
      const problem = levelProblem(values["log-level"]) ?? formatProblem(values["log-format"]) ?? driverProblem(values.driver);
      if (problem) return { kind: "bad", message: problem };
      const address = parseListenAddress(values.socket);
      const metrics = values.metrics === "" ? null : parseMetricsAddress(values.metrics);
      return {
        kind: "serve", driver: values.driver, socket: values.socket, address, stateDir: values["state-dir"], level: values["log-level"] as LogLevel,
        logFormat: values["log-format"] as LogFormat, metrics,
      };
    }
    if (command === "snapshotter") {
      const { values } = parseArgs({
        args: rest, strict: true, allowPositionals: false,
        options: {
          driver: { type: "string", default: SNAPSHOTTER_DEFAULTS.driver },
          socket: { type: "string", default: SNAPSHOTTER_DEFAULTS.socket },
          root: { type: "string", default: SNAPSHOTTER_DEFAULTS.root },
          size: { type: "string", default: "" },
          ...common,
        },
      });
      const problem = levelProblem(values["log-level"]) ?? formatProblem(values["log-format"]) ?? driverProblem(values.driver) ?? checkRoot(values.root) ??
        (values.socket.startsWith("/") ? null : `--socket must be an absolute path (got "${values.socket}")`);
      if (problem) return { kind: "bad", message: problem };
      const metrics = values.metrics === "" ? null : parseMetricsAddress(values.metrics);
      return {
        kind: "snapshotter", driver: values.driver, socket: values.socket, root: values.root, size: values.size, level: values["log-level"] as LogLevel,
        logFormat: values["log-format"] as LogFormat, metrics,
      };
    }
    if (command === "doctor") {
      const { values } = parseArgs({
        args: rest, strict: true, allowPositionals: false,
        options: {
          json: { type: "boolean", default: false },
          root: { type: "string", default: DOCTOR_DEFAULTS.root },
          "docker-socket": { type: "string", default: DOCTOR_DEFAULTS.dockerSocket },
        },
      });
      if (!values.root.startsWith("/")) return { kind: "bad", message: `--root must be an absolute path (got "${values.root}")` };
      return { kind: "doctor", json: values.json, root: values.root, dockerSocket: values["docker-socket"] };
    }
    if (command === "check") {
      const { values, positionals } = parseArgs({
        args: rest, strict: true, allowPositionals: true,
        options: { repair: { type: "boolean", default: false }, json: { type: "boolean", default: false } },
      });
      if (positionals.length !== 1) return { kind: "bad", message: "check takes one store: strata check HOME [--repair] [--json]" };
      if (!positionals[0].startsWith("/")) return { kind: "bad", message: `check needs an absolute path (got "${positionals[0]}")` };
      return { kind: "check", home: positionals[0].replace(/(.)\/+$/, "$1"), repair: values.repair, json: values.json };
    }
  } catch (err) {
    return { kind: "bad", message: (err as Error).message };
  }
  return { kind: "bad", message: `unknown command "${command}"` };
}
