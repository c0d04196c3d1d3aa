/** The snapshotter's one error translator: an error's kind becomes a gRPC status code containerd acts on. */
import { status as GrpcStatus } from "@grpc/grpc-js";
import { ErrnoError, type ErrorKind, StrataError } from "../core/errors.ts";

/** The gRPC code of each error kind (SNAPSHOTTER.md: what containerd expects). */
export const GRPC_CODE: Record<ErrorKind, GrpcStatus> = {
  "internal": GrpcStatus.UNKNOWN,
  "invalid-argument": GrpcStatus.INVALID_ARGUMENT,
  "not-found": GrpcStatus.NOT_FOUND,
  "already-exists": GrpcStatus.ALREADY_EXISTS,
  // containerd's GC only goes on past a snapshot with children when told FailedPrecondition.
  "busy": GrpcStatus.FAILED_PRECONDITION,
  "failed-precondition": GrpcStatus.FAILED_PRECONDITION,
  "invalid-layer": GrpcStatus.INVALID_ARGUMENT,
  "not-initialized": GrpcStatus.UNAVAILABLE,
  "unavailable": GrpcStatus.UNAVAILABLE,
};

/**
 * The status a failed call answers with; `during` ("Prepare of "k"") names calls whose error is not ours.
 * @example
 * toGrpcError(new NotFoundError('Snapshot "k" does not exist')); // { code: 5, details: 'Snapshot "k" does not exist' }
 */
export function toGrpcError(err: unknown, during: string): { code: GrpcStatus; details: string } {
  if (err instanceof StrataError && !(err instanceof ErrnoError)) return { code: GRPC_CODE[err.kind], details: err.message };
  // A bare syscall failure names neither the call nor the snapshot, as a runtime fs error does not.
  const message = (err instanceof ErrnoError ? err.described : err instanceof Error ? err.message : String(err)) || "internal error";
  return { code: GrpcStatus.UNKNOWN, details: `${during} failed: ${message}` };
}
