/** Entry point on Deno: `deno run -A src/main.deno.ts serve …`. */
import process from "node:process";
import { runCli } from "./cli.ts";
import { listenTcp, listenUnix } from "./serve/deno.ts";
import { openDatabase } from "./store/sqlite/deno.ts";
import { createSys } from "./sys/deno.ts";

process.exitCode = await runCli(Deno.args, { name: "deno", createSys, listenUnix, listenTcp, openDatabase });
process.exit();
