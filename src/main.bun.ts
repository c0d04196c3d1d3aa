/** Entry point on Bun (and in the compiled binary). */
import process from "node:process";
import { runCli } from "./cli.ts";
import { listenTcp, listenUnix } from "./serve/bun.ts";
import { openDatabase } from "./store/sqlite/bun.ts";
import { createSys } from "./sys/bun.ts";

process.exitCode = await runCli(Bun.argv.slice(2), { name: "bun", createSys, listenUnix, listenTcp, openDatabase });
process.exit();
