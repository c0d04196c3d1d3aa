/**
 * Reference-counted mounts: the first Get of a layer mounts it, later ones only count, the last
 * Put unmounts. Counts live in memory. A plugin restarted while the daemon keeps running must not
 * unmount the layers of running containers (the daemon never re-sends their Get), so a new process
 * adopts the layer mounts it finds with one reference each (`adopt`) and unmounts only the rest;
 * Cleanup, sent when the daemon shuts down, unmounts everything (`clearStale`), as moby's does.
 */
import * as fs from "node:fs/promises";
import { hasCode } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Sys } from "../sys/types.ts";
import type { MountSpec } from "./spec.ts";
import { assertOwnDir } from "../store/own.ts";
import { mountSpec, unmount } from "./mounter.ts";
import { type MountInfo, mountsUnder, readMountInfo } from "./mountinfo.ts";

/** Mount counts per layer ID. Callers hold the ID's lock around `acquire`/`release`/`drop`. */
export class Mounts {
  #sys: Sys;
  #log: Logger;
  #refs = new Map<string, number>();
  #owner: { uid: number; gid: number };

  constructor(sys: Sys, log: Logger, owner: { uid: number; gid: number }) {
    this.#sys = sys;
    this.#log = log;
    this.#owner = owner;
  }

  /** How many Gets of `id` are outstanding. */
  count(id: string): number {
    return this.#refs.get(id) ?? 0;
  }

  /** How many layers are mounted. */
  get active(): number {
    return this.#refs.size;
  }

  /**
   * Take a reference on `id`'s mount at `target`, mounting `build()` there if it is the first.
   * @example
   * await mounts.acquire("abc", "/h/abc/merged", async () => layerMount({ ... }), 'layer "abc"');
   */
  async acquire(id: string, target: string, build: () => Promise<MountSpec>, what: string): Promise<void> {
    const n = this.count(id);
    if (n > 0) {
      this.#refs.set(id, n + 1);
      return;
    }
    await fs.mkdir(target, { mode: 0o700 }).catch((err) => {
      if (!hasCode(err, "EEXIST")) throw err;
    });
    // chown and mount follow a symlink: one planted as the mount point must not take either out of Home.
    await assertOwnDir(target);
    try {
      await fs.chown(target, this.#owner.uid, this.#owner.gid);
      mountSpec(this.#sys, await build(), target, what);
    } catch (err) {
      await fs.rmdir(target).catch(() => {});
      throw err;
    }
    this.#refs.set(id, 1);
  }

  /** Drop a reference; at zero, unmount `target` (lazily when busy) and remove the mount point. */
  async release(id: string, target: string): Promise<void> {
    const n = this.count(id);
    if (n > 1) {
      this.#refs.set(id, n - 1);
      return;
    }
    await this.drop(id, target);
  }

  /** Unmount `target` whatever the count (Remove, Cleanup). */
  async drop(id: string, target: string): Promise<void> {
    this.#refs.delete(id);
    const how = unmount(this.#sys, target);
    if (how === "detached") this.#log.warn("layer was busy: detached its mount", { id });
    // Removing the mount point also ends copies of the mount in other mount namespaces.
    await fs.rmdir(target).catch(() => {});
  }

  /** The IDs with outstanding references. */
  ids(): string[] {
    return [...this.#refs.keys()];
  }

  /**
   * Take over what a previous process left mounted under `home`: a single mount on a layer's own
   * mount point (`mountPointOf(id)`, for an ID `isLayer` accepts) counts as one reference; anything
   * else is unmounted, except what `keep` accepts (layer filesystems, which hold data rather than
   * views of it). Returns the adopted IDs, the unmounted mount points and the kept mounts.
   */
  async adopt(
    home: string,
    layerOf: (mountPoint: string) => string | null,
    keep: (m: MountInfo) => boolean = () => false,
  ): Promise<{ adopted: string[]; unmounted: string[]; kept: MountInfo[] }> {
    this.#refs.clear();
    const real = await fs.realpath(home);
    const adopted: string[] = [];
    const unmounted: string[] = [];
    const kept: MountInfo[] = [];
    // Deepest and newest first: of two mounts stacked on one point, the top one is seen first.
    for (const m of mountsUnder(await readMountInfo(), real)) {
      if (keep(m)) {
        kept.push(m);
        continue;
      }
      const id = layerOf(m.mountPoint);
      if (id !== null && m.fsType === "overlay" && !this.#refs.has(id)) {
        this.#refs.set(id, 1);
        adopted.push(id);
        continue;
      }
      try {
        if (unmount(this.#sys, m.mountPoint) !== "not-mounted") unmounted.push(m.mountPoint);
      } catch (err) {
        this.#log.warn("cannot unmount a stale mount", { path: m.mountPoint, err: String(err) });
      }
    }
    return { adopted, unmounted, kept };
  }

  /**
   * Unmount everything mounted under `home` but what `keep` accepts (deepest first, detaching what
   * is busy) and forget all counts. Returns the mount points it unmounted.
   */
  async clearStale(home: string, keep: (m: MountInfo) => boolean = () => false): Promise<string[]> {
    this.#refs.clear();
    const real = await fs.realpath(home);
    const done: string[] = [];
    for (const m of mountsUnder(await readMountInfo(), real)) {
      if (keep(m)) continue;
      try {
        if (unmount(this.#sys, m.mountPoint) !== "not-mounted") done.push(m.mountPoint);
      } catch (err) {
        this.#log.warn("cannot unmount a stale mount", { path: m.mountPoint, err: String(err) });
      }
    }
    return done;
  }
}
