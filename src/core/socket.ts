/** Preparing and releasing the plugin's unix socket path, the same on every runtime. */
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as path from "node:path";
import { StrataError, hasCode } from "./errors.ts";

/** Permissions of the socket: root and the root group only. */
export const SOCKET_MODE = 0o660;

/**
 * Make `socketPath` ready to listen on: create its directory, and remove a stale socket left by a
 * killed plugin (Bun does not unlink it). A socket something still answers on is never removed.
 */
export async function prepareSocketPath(socketPath: string): Promise<void> {
  await fs.mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  let st;
  try {
    st = await fs.lstat(socketPath);
  } catch (err) {
    if (hasCode(err, "ENOENT")) return;
    throw err;
  }
  if (!st.isSocket()) throw new StrataError(`Cannot listen on "${socketPath}": it exists and is not a socket`);
  if (await _answers(socketPath)) throw new StrataError(`Cannot listen on "${socketPath}": another process is serving it`);
  await fs.unlink(socketPath);
}

/** Restrict the socket to root (called right after listen). */
export async function secureSocket(socketPath: string): Promise<void> {
  await fs.chmod(socketPath, SOCKET_MODE);
}

/** Remove the socket file on shutdown; a missing file is fine. */
export async function releaseSocketPath(socketPath: string): Promise<void> {
  await fs.rm(socketPath, { force: true });
}

function _answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.connect(socketPath);
    conn.once("connect", () => {
      conn.destroy();
      resolve(true);
    });
    conn.once("error", () => resolve(false));
  });
}
