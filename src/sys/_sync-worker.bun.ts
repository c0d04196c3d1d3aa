/**
 * The Bun worker that runs fsync(2) and syncfs(2) off the main thread: writing back a filesystem
 * can take seconds on a busy host, and the plugin's event loop must keep answering meanwhile.
 * Messages are `{ id, fd, whole }` (whole: syncfs, else fsync); replies `{ id, errno }` (0: done).
 */
import { dlopen, read } from "bun:ffi";

const lib = dlopen("libc.so.6", {
  /** int *__errno_location(void) */
  __errno_location: { args: [], returns: "ptr" },
  /** int fsync(int fd) */
  fsync: { args: ["i32"], returns: "i32" },
  /** int syncfs(int fd) */
  syncfs: { args: ["i32"], returns: "i32" },
});
const { __errno_location, fsync, syncfs } = lib.symbols;

declare const self: Worker;
self.onmessage = (event: MessageEvent<{ id: number; fd: number; whole: boolean }>) => {
  const { id, fd, whole } = event.data;
  const ret = whole ? syncfs(fd) : fsync(fd);
  postMessage({ id, errno: ret === -1 ? read.i32(__errno_location()!, 0) : 0 });
};
