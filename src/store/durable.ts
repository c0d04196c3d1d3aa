/**
 * Publishing what strata builds so that it survives a power cut, not only a SIGKILL: the data is
 * written back before the rename that makes it visible, and the directory holding the new name is
 * synced after it. Without the first step a crash can leave a layer's name pointing at empty or
 * missing files (ext4's delayed allocation writes data long after the rename); without the second
 * the rename itself can be lost, which after dockerd was told "done" is a layer it cannot find.
 *
 * Two ways to write back a staged tree, chosen by its size: `syncfs` of its filesystem (one call,
 * whatever the file count: an applied layer, a copied tree) or an fsync of each entry (a fresh
 * overlay layer is a handful of entries, and syncfs would also wait for every container's writes).
 * All syncs run off the event loop (`Sys.syncAsync`).
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { hasCode } from "../core/errors.ts";
import { DT, O, type Sys } from "../sys/types.ts";

/** How a staged tree is written back before it is published. */
export type SyncScope = "filesystem" | "entries";

/** syncfs of the filesystem holding `dir`. */
export async function syncFilesystem(sys: Sys, dir: string): Promise<void> {
  const fd = sys.openDir(dir);
  try {
    await sys.syncAsync(fd, true);
  } finally {
    sys.close(fd);
  }
}

/** fsync of the entry `p` itself (a file or directory, a mount point too; a symlink is synced through its directory). */
export async function syncEntry(sys: Sys, p: string): Promise<void> {
  let fd: number;
  try {
    fd = sys.openEntry(p, O.RDONLY | O.NONBLOCK);
  } catch (err) {
    // A symlink cannot be opened without following it; its directory's fsync (by the caller) covers it.
    if (hasCode(err, "ELOOP")) return;
    throw err;
  }
  try {
    await sys.syncAsync(fd, false);
  } finally {
    sys.close(fd);
  }
}

/** fsync of the directory holding `p`: makes a create, rename or unlink of `p` durable. */
export async function syncParent(sys: Sys, p: string): Promise<void> {
  await syncEntry(sys, path.dirname(p));
}

/** fsync of every entry below and including `dir` (no link followed): for small trees. */
async function _syncEntries(sys: Sys, dir: string): Promise<void> {
  for (const e of sys.lreaddirTypes(dir)) {
    const p = path.join(dir, e.name);
    if (e.type === DT.DIR) await _syncEntries(sys, p);
    else if (e.type === DT.REG) await syncEntry(sys, p);
  }
  await syncEntry(sys, dir);
}

/** Write back the staged tree `staged` as `scope` says. */
export async function syncStaged(sys: Sys, staged: string, scope: SyncScope): Promise<void> {
  if (scope === "filesystem") await syncFilesystem(sys, staged);
  else await _syncEntries(sys, staged);
}

/**
 * Rename the staged tree `from` to `to` durably: `from` written back first, the directory of `to`
 * (and of `from`, when another) synced after. `flags` as `Sys.rename2` takes them (EXCHANGE).
 * @example
 * await publish(sys, "/h/tmp/new-abc-1-1", "/h/dir/abc", "filesystem");
 */
export async function publish(sys: Sys, from: string, to: string, scope: SyncScope, flags = 0): Promise<void> {
  await syncStaged(sys, from, scope);
  if (flags === 0) await fs.rename(from, to);
  else sys.rename2(from, to, flags);
  await syncParent(sys, to);
  if (path.dirname(from) !== path.dirname(to)) await syncParent(sys, from);
}

/**
 * Write `data` to `file` so that a crash leaves the old content or the new, never a torn or empty
 * file: a temp beside it (O_EXCL, never through a planted symlink), fsync, rename, fsync of the dir.
 * @example
 * await writeFileDurable(sys, "/h/meta/abc", '{"parent":""}\n', 0o600, "/h/tmp/meta-abc-1-2");
 */
export async function writeFileDurable(sys: Sys, file: string, data: string, mode: number, temp: string): Promise<void> {
  await fs.writeFile(temp, data, { mode, flag: "wx" });
  try {
    await syncEntry(sys, temp);
    await fs.rename(temp, file);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await syncParent(sys, file);
}
