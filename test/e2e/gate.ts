/**
 * Skip or fail: an end-to-end file the plain unit run picks up skips with its reason, but a run
 * that asked for it (`STRATA_E2E=1`, as the test command's e2e stages do) fails when this host
 * cannot run it: a missing daemon or binary must not turn a stage green by skipping it all.
 */
import { test } from "bun:test";

/** `reason` (undefined: the tests run); under STRATA_E2E=1 a reason also registers one failing test naming it. */
export function skipUnlessAsked(reason: string | undefined, what: string): string | undefined {
  if (reason !== undefined && process.env.STRATA_E2E === "1") {
    test(`${what} can run on this host`, () => {
      throw new Error(`STRATA_E2E=1 asks for ${what}, but this host cannot run them: ${reason}`);
    });
  }
  return reason;
}
