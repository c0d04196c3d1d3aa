/**
 * `strata check`: find which driver's store a directory is, refuse it while a strata serves it,
 * run that driver's store check, and with `repair` apply the safe fixes in the order found.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { registeredDrivers, registrationOf } from "../core/driver.ts";
import { StrataError } from "../core/errors.ts";
import { readMountInfo } from "../mount/mountinfo.ts";
import { MARKER_FILE, inspectHome, looksLike } from "../store/home.ts";
import type { OpenDatabase } from "../store/sqlite/types.ts";
import type { Sys } from "../sys/types.ts";
import { checkSnapshotRecords, recordsFileOf } from "./snapshot-records.ts";
import { type LiveServer, servingProcess } from "./live.ts";
import { type Finding, storeCheckFor } from "./types.ts";

/** A finding as reported: with what `--repair` did about it. */
export interface ReportedFinding {
  severity: Finding["severity"];
  kind: string;
  path: string;
  message: string;
  /** Whether a safe fix exists. */
  repairable: boolean;
  /** What the repair did, when it ran and succeeded. */
  repaired?: string;
  /** Why the repair failed, when it ran and failed. */
  repairError?: string;
}

/** The outcome of one check. */
export interface CheckReport {
  home: string;
  driver: string;
  findings: ReportedFinding[];
  /** Problems found, repaired, and left. */
  problems: number;
  repaired: number;
  remaining: number;
}

/** The store cannot be checked (not a store, served by a live strata). */
export class CheckRefused extends StrataError {}

/**
 * Which driver's store `home` is: its marker, or the layout of a store made before markers (as
 * Init recognises one; a store with foreign entries in Home itself then needs its marker). A
 * snapshotter root (`<root>/<driver>.db` beside `<root>/<driver>/`) is not a Home: its driver's
 * Home is named instead.
 */
export async function storeDriver(home: string): Promise<string> {
  const state = await inspectHome(home).catch((err) => {
    throw new CheckRefused((err as Error).message);
  });
  if (!state.exists) throw new CheckRefused(`Cannot check "${home}": it does not exist`);
  if (state.marker !== null) return state.marker;
  const rootOf = registeredDrivers().filter((d) => state.entries.includes(`${d}.db`) && state.entries.includes(d));
  if (rootOf.length > 0) {
    throw new CheckRefused(`Cannot check "${home}": it is a snapshotter root; check its driver's store: ${rootOf.map((d) => path.join(home, d)).join(", ")}`);
  }
  const laidOut = registeredDrivers().find((d) => {
    const layout = registrationOf(d)?.layout;
    return layout !== undefined && looksLike(state, layout);
  });
  if (laidOut !== undefined) return laidOut;
  throw new CheckRefused(`Cannot check "${home}": it is not a strata store (no ${MARKER_FILE}, and not laid out as one)`);
}

/**
 * Check the store at `home`; with `repair`, run every safe fix and report what each did.
 * @example
 * const report = await checkStore("/var/lib/docker/strata", { sys, repair: false });
 * report.remaining; // problems a person must look at
 */
export async function checkStore(
  home: string, opts: { sys: Sys; repair: boolean; servers?: LiveServer[]; openDatabase?: OpenDatabase },
): Promise<CheckReport> {
  const driver = await storeDriver(home);
  const live = servingProcess(home, opts.servers);
  if (live !== null) {
    throw new CheckRefused(`Cannot check "${home}": strata ${live.command} (pid ${live.pid}) is serving it; stop it first (a check must not race a live store)`);
  }
  const checker = storeCheckFor(driver);
  if (checker === undefined) throw new CheckRefused(`Cannot check "${home}": the ${driver} driver has no store check`);
  const findings = await checker.check({ home, realHome: await fs.realpath(home), sys: opts.sys, mounts: await readMountInfo() });
  // Under the snapshotter the Home sits beside its records: compare them too.
  const records = recordsFileOf(home, driver);
  if (records !== null && opts.openDatabase && (await fs.stat(records).catch(() => null))?.isFile()) {
    findings.push(...(await checkSnapshotRecords(home, records, opts.openDatabase, checker.layerIds)));
  }
  const out: ReportedFinding[] = [];
  for (const f of findings) {
    const r: ReportedFinding = { severity: f.severity, kind: f.kind, path: f.path, message: f.message, repairable: f.repair !== undefined };
    if (opts.repair && f.repair) {
      try {
        r.repaired = await f.repair();
      } catch (err) {
        r.repairError = (err as Error).message;
      }
    }
    out.push(r);
  }
  const problems = out.filter((f) => f.severity === "problem");
  const repaired = problems.filter((f) => f.repaired !== undefined).length;
  return { home, driver, findings: out, problems: problems.length, repaired, remaining: problems.length - repaired };
}

/** The report as lines: one per finding (and per repair), then a summary. */
export function formatReport(r: CheckReport, repair: boolean): string {
  const rel = (p: string) => (p === r.home ? "." : p.startsWith(`${r.home}/`) ? p.slice(r.home.length + 1) : p);
  let out = `strata check ${r.home} (${r.driver} store)\n`;
  for (const f of r.findings) {
    const hint = f.severity === "problem" && !repair ? (f.repairable ? " [--repair fixes it]" : " [left for you]") : "";
    out += `${f.severity.padEnd(8)} ${f.kind.padEnd(22)} ${rel(f.path)}: ${f.message}${hint}\n`;
    if (f.repaired !== undefined) out += `${"repaired".padEnd(8)} ${f.kind.padEnd(22)} ${rel(f.path)}: ${f.repaired}\n`;
    if (f.repairError !== undefined) out += `${"failed".padEnd(8)} ${f.kind.padEnd(22)} ${rel(f.path)}: ${f.repairError}\n`;
  }
  const notes = r.findings.length - r.problems;
  const noteText = notes ? `, ${notes} note${notes === 1 ? "" : "s"}` : "";
  if (r.problems === 0) return `${out}ok: no problems${noteText}\n`;
  const fixable = r.findings.filter((f) => f.severity === "problem" && f.repairable).length;
  const tail = repair ? `${r.repaired} repaired, ${r.remaining} left` : `${fixable} repairable with --repair`;
  return `${out}${r.problems} problem${r.problems === 1 ? "" : "s"} (${tail})${noteText}\n`;
}
