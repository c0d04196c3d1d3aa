/** Layer IDs: the one check that stands between a request and a path. */
import { InvalidRequestError } from "./errors.ts";

/** What a layer ID may look like: no "/", no NUL, not "." or "..", at most 255 characters. */
export const LAYER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;

/** Throw unless `id` is safe to use as a single path component. */
export function assertLayerId(id: string, what = "layer ID"): void {
  if (typeof id !== "string" || !LAYER_ID_PATTERN.test(id)) {
    throw new InvalidRequestError(`Invalid ${what} ${JSON.stringify(String(id).slice(0, 80))}`);
  }
}
