/**
 * The error tree. Drivers and the archive code throw these; each carries a kind, and each front end
 * maps kinds to its own codes in one place (GraphDriver: `src/graphdriver/errors.ts`, HTTP status and
 * `{"Err"}`; snapshotter: `src/snapshotter/errors.ts`, gRPC status).
 */

/** What went wrong, independent of any protocol. */
export type ErrorKind =
  | "internal"
  | "invalid-argument"
  | "not-found"
  | "already-exists"
  | "busy"
  | "failed-precondition"
  | "invalid-layer"
  | "not-initialized"
  | "unavailable";

/** Base class: every error strata raises on purpose. */
export class StrataError extends Error {
  kind: ErrorKind = "internal";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request was malformed (bad JSON, missing or invalid field). */
export class InvalidRequestError extends StrataError {
  override kind: ErrorKind = "invalid-argument";
}

/** The layer named does not exist. */
export class NotFoundError extends StrataError {
  override kind: ErrorKind = "not-found";
}

/** The layer already exists. */
export class AlreadyExistsError extends StrataError {
  override kind: ErrorKind = "already-exists";
}

/** The layer is in use (mounted, or has children). */
export class BusyError extends StrataError {
  override kind: ErrorKind = "busy";
}

/** The call does not fit the object's state (a snapshot with children, Commit of one not active). */
export class FailedPreconditionError extends StrataError {
  override kind: ErrorKind = "failed-precondition";
}

/** How many children `layerHasChildren` names before it only counts the rest. */
const _NAMED_CHILDREN = 5;

/**
 * The BusyError of removing a layer other layers are built on.
 * @example
 * throw layerHasChildren("abc", ["x", "y"]); // Cannot remove layer "abc": layers "x", "y" are built on it
 */
export function layerHasChildren(id: string, children: string[]): BusyError {
  const named = children.slice(0, _NAMED_CHILDREN).map((c) => `"${c}"`).join(", ");
  const more = children.length > _NAMED_CHILDREN ? ` and ${children.length - _NAMED_CHILDREN} more` : "";
  const which = children.length === 1 ? `layer ${named} is` : `layers ${named}${more} are`;
  return new BusyError(`Cannot remove layer "${id}": ${which} built on it`);
}

/** A layer tar was rejected (traversal, corruption, unsupported entry). */
export class InvalidLayerError extends StrataError {
  override kind: ErrorKind = "invalid-layer";
}

/** The plugin was asked to act before Init. */
export class NotInitializedError extends StrataError {
  override kind: ErrorKind = "not-initialized";
}

/** moby's ErrNotSupported: this driver cannot run on this host. */
export class ErrNotSupported extends StrataError {
  override kind: ErrorKind = "unavailable";
}
/** moby's ErrPrerequisites: a prerequisite (kernel module, tool) is missing. */
export class ErrPrerequisites extends StrataError {
  override kind: ErrorKind = "unavailable";
}
/** moby's ErrIncompatibleFS: the backing filesystem cannot host this driver. */
export class ErrIncompatibleFS extends StrataError {
  override kind: ErrorKind = "unavailable";
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 9: "EBADF",
  11: "EAGAIN", 12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 15: "ENOTBLK", 16: "EBUSY", 17: "EEXIST",
  18: "EXDEV", 19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 23: "ENFILE", 24: "EMFILE",
  25: "ENOTTY", 26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC", 30: "EROFS", 31: "EMLINK", 34: "ERANGE",
  36: "ENAMETOOLONG", 38: "ENOSYS", 39: "ENOTEMPTY", 40: "ELOOP", 61: "ENODATA", 95: "EOPNOTSUPP",
  122: "EDQUOT",
};

/** What each errno means, as strerror(3) and Node's fs errors say it. */
const ERRNO_TEXT: Record<string, string> = {
  EPERM: "operation not permitted", ENOENT: "no such file or directory", EINTR: "interrupted system call",
  EIO: "i/o error", ENXIO: "no such device or address", EBADF: "bad file descriptor", EAGAIN: "resource temporarily unavailable",
  ENOMEM: "not enough memory", EACCES: "permission denied", EBUSY: "resource busy or locked", EEXIST: "file already exists",
  EXDEV: "cross-device link not permitted", ENODEV: "no such device", ENOTDIR: "not a directory", EISDIR: "is a directory",
  EINVAL: "invalid argument", ENFILE: "file table overflow", EMFILE: "too many open files", ETXTBSY: "text file is busy",
  EFBIG: "file too large", ENOSPC: "no space left on device", EROFS: "read-only file system", EMLINK: "too many links",
  ERANGE: "result too large", ENAMETOOLONG: "name too long", ENOSYS: "function not implemented",
  ENOTEMPTY: "directory not empty", ELOOP: "too many symbolic links encountered", ENODATA: "no data available",
  EOPNOTSUPP: "operation not supported", EDQUOT: "disk quota exceeded",
};

/** The symbolic name of an errno value ("ENOENT"), or "errno N". */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/** A failed libc call. `code` is the symbolic name, like Node's fs errors. */
export class ErrnoError extends StrataError {
  readonly code: string;
  constructor(readonly syscall: string, readonly errno: number, readonly path?: string) {
    super(`${syscall}${path === undefined ? "" : ` "${path}"`}: ${errnoName(errno)}`);
    this.code = errnoName(errno);
  }

  /**
   * The error in the form Node's fs errors take ("ENOSPC: no space left on device, write"), for a
   * protocol answer that prefixes the call and layer it happened in.
   */
  get described(): string {
    const text = ERRNO_TEXT[this.code];
    return `${this.code}${text ? `: ${text}` : ""}, ${this.syscall}${this.path === undefined ? "" : ` "${this.path}"`}`;
  }
}

/** True when `err` is an errno-style error (ours or Node's fs) with one of the given codes. */
export function hasCode(err: unknown, ...codes: string[]): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && codes.includes(code);
}
