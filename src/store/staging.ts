/**
 * A driver's temp dir under Home, where every layer is built before its rename into place and
 * every removal goes first: fresh names for that work, the rename aside, the delete after. A crash
 * leaves only entries in the temp dir, which the driver's next start empties or finishes.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { hasCode } from "../core/errors.ts";
import type { FaultName } from "../core/fault.ts";
import type { Logger } from "../core/log.ts";
import type { Sys } from "../sys/types.ts";
import { entryPath, tempName } from "./names.ts";
import { removeBeneath } from "./remove-tree.ts";

export class Staging {
  #seq = 0;

  readonly #log: Logger;
  readonly #sys: Sys;

  constructor(readonly dir: string, sys: Sys, log: Logger) {
    this.#sys = sys;
    this.#log = log;
  }

  /**
   * A fresh path in the temp dir (or in `dir`, another temp dir of the same store: one counter for
   * all keeps the names apart), not yet made.
   * @example
   * staging.path("new-", "abc"); // "/h/tmp/new-abc-<pid>-1"
   */
  path(prefix: string, id: string, dir = this.dir): string {
    return entryPath(dir, tempName(prefix, id, ++this.#seq));
  }

  /** Rename `target` into the temp dir (gone under its name from then on); null when nothing was there. */
  async moveAside(target: string, prefix: string, id: string): Promise<string | null> {
    const aside = this.path(prefix, id);
    try {
      await fs.rename(target, aside);
    } catch (err) {
      if (hasCode(err, "ENOENT")) return null;
      throw err;
    }
    return aside;
  }

  /**
   * Delete the entry `p` of a temp dir and all below it, through directory fds resolved beneath
   * that temp dir (`removeBeneath`): a symlink goes as a link, a mount inside is refused.
   */
  async remove(p: string, fault?: FaultName): Promise<void> {
    await removeBeneath(this.#sys, path.dirname(p), path.basename(p), fault);
  }

  /**
   * `remove`, for a tree moved aside or a build that failed: what cannot go now is logged and left
   * for the next start. `fault`: the crash point passed in the middle of it (start-up recovery's).
   */
  async discard(p: string, id: string, what = "remove", fault?: FaultName): Promise<void> {
    await this.remove(p, fault).catch((e) => this.#log.warn(`${what} left files`, { id, err: String(e) }));
  }
}
