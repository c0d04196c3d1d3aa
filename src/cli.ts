/**
 * The command line: `strata serve|snapshotter|status|doctor|check|version|--help`, runtime-neutral; entry points
 * pass their runtime. Parsing is pure (`cli/args.ts`); each command runs from its front end's module.
 */
import process from "node:process";
import "./drivers.ts";
import { type Command, parseCommand, usage } from "./cli/args.ts";
import { registeredDrivers } from "./core/driver.ts";
import { createLogger } from "./core/log.ts";
import { versionText } from "./core/version.ts";
import { runServe } from "./graphdriver/command.ts";
import type { ListenTcp, ListenUnix } from "./serve/types.ts";
import { formatStatus, queryStatus } from "./graphdriver/status-client.ts";
import { runCheck } from "./check/command.ts";
import { runDoctor } from "./doctor/command.ts";
import { runDaemonJsonCommand } from "./install/daemon-json-command.ts";
import { runSnapshotter } from "./snapshotter/command.ts";
import type { OpenDatabase } from "./store/sqlite/types.ts";
import type { Sys } from "./sys/types.ts";

export { DEFAULTS } from "./cli/args.ts";

/** What an entry point provides. */
export interface Runtime {
  name: "bun" | "deno";
  createSys(): Sys;
  listenUnix: ListenUnix;
  listenTcp: ListenTcp;
  openDatabase: OpenDatabase;
}

/** Run the CLI; resolves to the exit code (serve and snapshotter resolve when they stop). */
export async function runCli(argv: string[], runtime: Runtime): Promise<number> {
  const cmd: Command = parseCommand(argv, registeredDrivers());
  switch (cmd.kind) {
    case "help":
      process.stdout.write(usage(registeredDrivers()));
      return cmd.exitCode;
    case "version":
      process.stdout.write(versionText(runtime.name) + "\n");
      return 0;
    case "bad":
      process.stderr.write(`strata: ${cmd.message}\n\n${usage(registeredDrivers())}`);
      return 2;
    case "daemon-json":
      return runDaemonJsonCommand(cmd.argv);
    case "status":
      try {
        process.stdout.write(formatStatus(await queryStatus(cmd.socket)));
        return 0;
      } catch (err) {
        process.stderr.write(`strata: ${(err as Error).message}\n`);
        return 1;
      }
    case "doctor":
      return await runDoctor({ ...cmd, sys: runtime.createSys(), runtime: runtime.name });
    case "check":
      return await runCheck({ ...cmd, sys: runtime.createSys(), openDatabase: runtime.openDatabase });
    case "serve":
      return await runServe({
        ...cmd, log: createLogger(cmd.level, undefined, cmd.logFormat), sys: runtime.createSys(), runtime: runtime.name, listenUnix: runtime.listenUnix, listenTcp: runtime.listenTcp,
      });
    case "snapshotter":
      try {
        return await runSnapshotter({
          ...cmd, log: createLogger(cmd.level, undefined, cmd.logFormat), sys: runtime.createSys(), openDatabase: runtime.openDatabase,
          listenUnix: runtime.listenUnix, listenTcp: runtime.listenTcp,
        });
      } catch (err) {
        process.stderr.write(`strata: ${(err as Error).message}\n`);
        return 1;
      }
  }
}
