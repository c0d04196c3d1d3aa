/** The command line: `strata serve|status|version|--help`, runtime-neutral; entry points pass their runtime. */
import process from "node:process";
import { parseArgs } from "node:util";
import { createApp } from "./graphdriver/app.ts";
import { DAEMON_JSON_COMMAND, runDaemonJsonCommand } from "./daemon-json.ts";
import "./drivers.ts";
import { registeredDrivers } from "./core/driver.ts";
import { LOG_LEVELS, createLogger, type LogLevel } from "./core/log.ts";
import { Plugin } from "./graphdriver/plugin.ts";
import { prepareSocketPath, releaseSocketPath, secureSocket } from "./core/socket.ts";
import { parseListenAddress } from "./graphdriver/serve/address.ts";
import type { ListenTcp, ListenUnix, Listener } from "./graphdriver/serve/types.ts";
import { formatStatus, queryStatus } from "./graphdriver/status-client.ts";
import type { Sys } from "./sys/types.ts";
import { versionText } from "./core/version.ts";
import { SNAPSHOTTER_DEFAULTS, checkRoot, runSnapshotter } from "./snapshotter/command.ts";
import type { OpenDatabase } from "./store/sqlite/types.ts";

/** What an entry point provides. */
export interface Runtime {
  name: "bun" | "deno";
  createSys(): Sys;
  listenUnix: ListenUnix;
  listenTcp: ListenTcp;
  openDatabase: OpenDatabase;
}

/** Defaults of `strata serve`. */
export const DEFAULTS = {
  driver: "auto",
  socket: "/run/docker/plugins/strata.sock",
  stateDir: "/var/lib/strata",
  logLevel: "info" as LogLevel,
};

/** The usage text. */
export function usage(): string {
  return `strata — a Docker storage (graph) driver plugin

Usage:
  strata serve [--driver auto|${registeredDrivers().join("|")}] [--socket PATH] [--state-dir DIR] [--log-level ${LOG_LEVELS.join("|")}]
  strata snapshotter [--driver auto|${registeredDrivers().join("|")}] [--socket PATH] [--root DIR] [--size SIZE] [--log-level ${LOG_LEVELS.join("|")}]
  strata status [--socket PATH]
  strata version
  strata --help

serve options:
  --driver      storage driver when Init names none (strata.driver=NAME in --storage-opt wins); default ${DEFAULTS.driver}
  --socket      unix socket to listen on, or tcp://HOST:PORT on a loopback HOST only; default ${DEFAULTS.socket}
  --state-dir   where Init's arguments are kept across restarts; default ${DEFAULTS.stateDir}
  --log-level   default ${DEFAULTS.logLevel}

snapshotter options (containerd's proxy snapshotter over gRPC):
  --driver      storage driver; default ${SNAPSHOTTER_DEFAULTS.driver}
  --socket      unix socket to listen on; default ${SNAPSHOTTER_DEFAULTS.socket}
  --root        where snapshots and their records live; default ${SNAPSHOTTER_DEFAULTS.root}
  --size        size limit of every container's snapshot, e.g. 10G (overlay; not of layers containerd unpacks);
                the label containerd.io/snapshot/strata.size on Prepare sets one snapshot's ("0": none)
  --log-level   default ${DEFAULTS.logLevel}

status: asks the plugin serving on --socket (default ${DEFAULTS.socket}) for its status

Then: dockerd --experimental --storage-driver strata
`;
}

/** Run the CLI; resolves to the exit code (serve resolves when the server stops). */
export async function runCli(argv: string[], runtime: Runtime): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(usage());
    return command === undefined ? 2 : 0;
  }
  if (command === "version" || command === "--version") {
    process.stdout.write(versionText(runtime.name) + "\n");
    return 0;
  }
  if (command === "status") return await status(rest);
  // Internal, for install.sh: a JSON merge POSIX sh cannot do (src/daemon-json.ts).
  if (command === DAEMON_JSON_COMMAND) return runDaemonJsonCommand(rest);
  if (command === "snapshotter") return await snapshotter(rest, runtime);
  if (command !== "serve") return _bad(`unknown command "${command}"`);
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      strict: true,
      allowPositionals: false,
      options: {
        driver: { type: "string", default: DEFAULTS.driver },
        socket: { type: "string", default: DEFAULTS.socket },
        "state-dir": { type: "string", default: DEFAULTS.stateDir },
        "log-level": { type: "string", default: DEFAULTS.logLevel },
      },
    }));
  } catch (err) {
    return _bad((err as Error).message);
  }
  const level = values["log-level"] as LogLevel;
  if (!LOG_LEVELS.includes(level)) return _bad(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
  if (values.driver !== "auto" && !registeredDrivers().includes(values.driver)) {
    return _bad(`--driver must be auto or one of ${registeredDrivers().join(", ")}`);
  }
  let address;
  try {
    address = parseListenAddress(values.socket);
  } catch (err) {
    return _bad((err as Error).message);
  }
  return await serve({ driver: values.driver, socket: values.socket, address, stateDir: values["state-dir"], level }, runtime);
}

interface ServeCommand {
  driver: string;
  socket: string;
  address: ReturnType<typeof parseListenAddress>;
  stateDir: string;
  level: LogLevel;
}

async function serve(opts: ServeCommand, runtime: Runtime): Promise<number> {
  const log = createLogger(opts.level);
  const plugin = new Plugin({ sys: runtime.createSys(), stateDir: opts.stateDir, defaultDriver: opts.driver, log });
  try {
    await plugin.restore();
  } catch (err) {
    // Serve anyway: the daemon's next Init (at its own restart) can fix what the saved state could not.
    log.error("cannot restore saved state", { stateDir: opts.stateDir, err: (err as Error).message });
  }
  const fetch = createApp(plugin, log).fetch;
  let listener: Listener;
  let where = opts.socket;
  if ("tcp" in opts.address) {
    const tcp = await runtime.listenTcp(opts.address.tcp.hostname, opts.address.tcp.port, fetch);
    listener = tcp;
    where = `tcp://${opts.address.tcp.hostname.includes(":") ? `[${opts.address.tcp.hostname}]` : opts.address.tcp.hostname}:${tcp.port}`;
  } else {
    await prepareSocketPath(opts.address.unix);
    listener = await runtime.listenUnix(opts.address.unix, fetch);
    await secureSocket(opts.address.unix);
  }
  log.info("serving", { socket: where, runtime: runtime.name, driver: opts.driver, stateDir: opts.stateDir });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info("stopping", { signal });
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  // Mounts stay: containers the daemon is running keep using them; Cleanup is the daemon's call.
  await listener.close();
  if ("unix" in opts.address) await releaseSocketPath(opts.address.unix);
  log.info("stopped");
  return 0;
}

async function snapshotter(argv: string[], runtime: Runtime): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        driver: { type: "string", default: SNAPSHOTTER_DEFAULTS.driver },
        socket: { type: "string", default: SNAPSHOTTER_DEFAULTS.socket },
        root: { type: "string", default: SNAPSHOTTER_DEFAULTS.root },
        size: { type: "string", default: "" },
        "log-level": { type: "string", default: DEFAULTS.logLevel },
      },
    }));
  } catch (err) {
    return _bad((err as Error).message);
  }
  const level = values["log-level"] as LogLevel;
  if (!LOG_LEVELS.includes(level)) return _bad(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
  if (values.driver !== "auto" && !registeredDrivers().includes(values.driver)) {
    return _bad(`--driver must be auto or one of ${registeredDrivers().join(", ")}`);
  }
  const bad = checkRoot(values.root);
  if (bad !== null) return _bad(bad);
  if (!values.socket.startsWith("/")) return _bad(`--socket must be an absolute path (got "${values.socket}")`);
  const log = createLogger(level);
  try {
    return await runSnapshotter({
      driver: values.driver, socket: values.socket, root: values.root, size: values.size, log, sys: runtime.createSys(), openDatabase: runtime.openDatabase,
    });
  } catch (err) {
    process.stderr.write(`strata: ${(err as Error).message}\n`);
    return 1;
  }
}

async function status(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, strict: true, allowPositionals: false, options: { socket: { type: "string", default: DEFAULTS.socket } } }));
  } catch (err) {
    return _bad((err as Error).message);
  }
  try {
    process.stdout.write(formatStatus(await queryStatus(values.socket)));
    return 0;
  } catch (err) {
    process.stderr.write(`strata: ${(err as Error).message}\n`);
    return 1;
  }
}

function _bad(message: string): number {
  process.stderr.write(`strata: ${message}\n\n${usage()}`);
  return 2;
}
