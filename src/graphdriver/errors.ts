/** GraphDriver's one error translator: an error's kind becomes an HTTP status and `{"Err": message}`. */
import { ErrnoError, type ErrorKind, StrataError } from "../core/errors.ts";

/** The HTTP status the GraphDriver protocol answers each error kind with. */
export const HTTP_STATUS: Record<ErrorKind, number> = {
  "internal": 500,
  "invalid-argument": 400,
  "not-found": 404,
  "already-exists": 409,
  "busy": 409,
  "failed-precondition": 409,
  "invalid-layer": 400,
  "not-initialized": 503,
  "unavailable": 500,
};

/**
 * The protocol's error body and status for any thrown value; `during` ("ApplyDiff of layer "x"")
 * prefixes errors that are not ours.
 * @example
 * toErrResponse(new NotFoundError('Cannot get layer "x": it does not exist')); // { status: 404, body: { Err: "Cannot get layer …" } }
 */
export function toErrResponse(err: unknown, during?: string): { status: number; body: { Err: string } } {
  if (err instanceof StrataError && !(err instanceof ErrnoError)) return { status: HTTP_STATUS[err.kind], body: { Err: err.message } };
  // A bare syscall failure (ours, or a runtime fs error such as "ENOSPC: no space left on device,
  // write"): it names neither the call nor the layer, so say which.
  const message = (err instanceof ErrnoError ? err.described : err instanceof Error ? err.message : String(err)) || "internal error";
  return { status: 500, body: { Err: during ? `${during}: ${message}` : message } };
}
