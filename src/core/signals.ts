/** How every long-running command waits to be told to stop. */
import process from "node:process";
import type { Logger } from "./log.ts";

/**
 * Resolve at the first SIGTERM or SIGINT, logging which.
 * @example
 * await untilStopped(log); // then close listeners
 */
export function untilStopped(log: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info("stopping", { signal });
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
