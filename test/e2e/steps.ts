/**
 * The cases of one end-to-end suite that runs as a sequence on one set of daemons: a case refuses
 * to run once a fatal one failed, each times itself, and failures are counted so the logs are kept.
 */
import { test } from "bun:test";

/** Options of one case. */
export interface StepOptions {
  timeoutMs?: number;
  /** The later cases need this one: they refuse to run when it did not finish. */
  fatal?: boolean;
  /** Why this case is skipped, when it is. */
  skip?: string;
}

export class Steps {
  /** Cases that failed, or are running (a case bun abandons at its timeout stays counted). */
  failed = 0;
  #notRun: string | undefined;
  #logsKept = false;
  readonly #timings: [string, number][] = [];

  /** `label` names the suite in printed lines; `skip` skips every case, with its reason. */
  constructor(readonly label: string, readonly skip?: string) {}

  /** Register one case. */
  add(name: string, fn: () => Promise<void>, opts: StepOptions = {}): void {
    const skip = this.skip ?? opts.skip;
    test.skipIf(!!skip)(skip ? `${name} (skipped: ${skip})` : name, async () => {
      if (this.#notRun) throw new Error(`Not run: ${this.#notRun}`);
      const t0 = performance.now();
      this.failed++;
      if (opts.fatal) this.#notRun = `"${name}" did not finish`;
      try {
        await fn();
        this.failed--;
        if (opts.fatal) this.#notRun = undefined;
      } finally {
        this.#timings.push([name, performance.now() - t0]);
      }
    }, opts.timeoutMs ?? 120_000);
  }

  /**
   * Copy the logs out (once) when `failures` > 0 or STRATA_E2E_KEEP_LOGS=1; `copy` returns where
   * they went. A case calling this counts itself as failed until it ends: pass `failed - 1`.
   */
  keepLogsIf(failures: number, copy: () => string): void {
    if (this.#logsKept || !(failures > 0 || process.env.STRATA_E2E_KEEP_LOGS === "1")) return;
    this.#logsKept = true;
    console.error(`[e2e ${this.label}] logs kept in ${copy()}`);
  }

  /** Print each case's wall time. */
  printTimings(): void {
    const total = this.#timings.reduce((s, [, ms]) => s + ms, 0);
    const rows = this.#timings.map(([n, ms]) => `  ${(ms / 1000).toFixed(2).padStart(7)} s  ${n}`).join("\n");
    console.log(`[e2e ${this.label}] case wall times (total ${(total / 1000).toFixed(1)} s):\n${rows}`);
  }
}
