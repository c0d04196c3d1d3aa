/**
 * The tally every Deno smoke script keeps: named checks, failures printed as `FAIL name: why`, and
 * the closing "N passed, N failed" line scripts/test.sh counts (exit 1 on any failure).
 */
import process from "node:process";
import { inspect } from "node:util";

/** A smoke script's checks. */
export interface Smoke {
  /** A check whose outcome is already known. */
  ok(name: string, ok: boolean, detail?: string): void;
  /** Run `fn`: it passes when it returns `true`; a throw or any other value fails, naming it. */
  check(name: string, fn: () => unknown): void;
  /** {@link check} for a `fn` that may be async. */
  checkAsync(name: string, fn: () => unknown): Promise<void>;
  /** Count a failure outside any check (setup, an aborted script). */
  fail(name: string, err: unknown): void;
  /** Print the closing line and exit. */
  finish(): never;
}

/** A new tally. */
export function smoke(): Smoke {
  let passed = 0;
  let failed = 0;
  const failure = (name: string, detail: string) => {
    failed++;
    console.error(`FAIL ${name}${detail ? `: ${detail}` : ""}`);
  };
  const why = (err: unknown) => (err instanceof Error ? err.message : String(err));
  const judge = (name: string, got: unknown) => {
    if (got === true) passed++;
    else failure(name, `got ${inspect(got)}`);
  };
  return {
    ok(name, ok, detail = "") {
      if (ok) passed++;
      else failure(name, detail);
    },
    check(name, fn) {
      try {
        judge(name, fn());
      } catch (err) {
        failure(name, why(err));
      }
    },
    async checkAsync(name, fn) {
      try {
        judge(name, await fn());
      } catch (err) {
        failure(name, why(err));
      }
    },
    fail(name, err) {
      failure(name, err instanceof Error ? (err.stack ?? err.message) : String(err));
    },
    finish() {
      console.log(`${passed} passed, ${failed} failed`);
      process.exit(failed === 0 ? 0 : 1);
    },
  };
}
