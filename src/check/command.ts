/** `strata check HOME [--repair] [--json]`: exit 0 when no problem is left, 1 when one is, 2 when refused. */
import process from "node:process";
import type { OpenDatabase } from "../store/sqlite/types.ts";
import type { Sys } from "../sys/types.ts";
import { CheckRefused, checkStore, formatReport } from "./run.ts";

/** What `strata check` was asked for. */
export interface CheckCommand {
  home: string;
  repair: boolean;
  json: boolean;
  sys: Sys;
  /** Opens the snapshotter's records (read-only) when the store is a snapshotter's. */
  openDatabase?: OpenDatabase;
}

/** Run the check and print its report; resolves to the exit code. */
export async function runCheck(cmd: CheckCommand): Promise<number> {
  try {
    const report = await checkStore(cmd.home, { sys: cmd.sys, repair: cmd.repair, openDatabase: cmd.openDatabase });
    process.stdout.write(cmd.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report, cmd.repair));
    return report.remaining === 0 ? 0 : 1;
  } catch (err) {
    if (cmd.json) process.stdout.write(JSON.stringify({ home: cmd.home, error: (err as Error).message }) + "\n");
    process.stderr.write(`strata: ${(err as Error).message}\n`);
    return err instanceof CheckRefused ? 2 : 1;
  }
}
